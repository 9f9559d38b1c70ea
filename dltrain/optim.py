"""Optimisers over parameter groups, learning-rate schedules, and explicit penalty terms.

The builders take a config node as Hydra composes it (DictConfig) or as plain values
(`OmegaConf.to_container(node, resolve=True)`): they read keys by subscript, and every default
lives in conf/, none here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim.optimizer import _default_to_fused_or_foreach, _get_fused_kernels_supported_devices

from dltrain.errors import ConfigError
from dltrain.targets import call_target

Node = Mapping[str, Any]  # a config node: a DictConfig, or the same as plain containers

KERNELS = ("fused", "foreach")  # the optimiser keys that pick torch's implementation


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weights (tensors of 2+ dimensions) decay; biases and normalisation parameters do not.

    Without weight decay every parameter goes into one group.

    Decaying a bias or a norm's scale does not limit capacity, it only shifts or shrinks
    activations, which is why weight decay (and the L2/L1 penalties) skip 1-D parameters.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    if weight_decay == 0:  # one group: the same update, and fewer kernel launches per step
        return [{"params": params, "weight_decay": 0.0}]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def kernel_choice(cfg: Node, params: list[torch.Tensor]) -> dict[str, bool]:
    """The implementation keywords dltrain adds to the optimiser's config: `{"fused": True}`
    where the config leaves both `fused` and `foreach` unset (null or absent) and torch has
    fused kernels for these parameters' devices and dtypes, else nothing.

    The fused kernel updates all parameters in one pass instead of a handful of passes per
    tensor: the same update to float rounding, and on small models per-step overhead is most
    of the step (a hand-written loop with fused Adam is 1.3-1.45x faster than with plain Adam
    on a CPU). Where torch has no fused kernel (a device or dtype it lacks, an optimiser
    without one, such as L-BFGS or RMSprop) nothing is added, and torch falls back quietly to
    its own default: foreach kernels where it has them, else its per-tensor loop.

    A config that sets either key is followed as written; `fused: true` where torch has no
    fused kernel for the parameters is a ConfigError, not a quiet fallback.
    """
    # (that a setting is a boolean or null is its rule's to check: config.RULES)
    chosen = {key: cfg[key] for key in KERNELS if key in cfg and cfg[key] is not None}
    differentiable = "differentiable" in cfg and bool(cfg["differentiable"])
    if chosen.get("fused"):
        if chosen.get("foreach"):
            raise ConfigError("optim.fused=true and optim.foreach=true exclude each other; "
                              "set one of them to null.")
        if differentiable:
            raise ConfigError("optim.fused=true cannot differentiate through the optimiser "
                              "step (optim.differentiable=true); set optim.fused=null.")
        unsupported = next((p for p in params if not _fused_supported([p])), None)
        if unsupported is not None:
            devices = ", ".join(_get_fused_kernels_supported_devices())
            raise ConfigError(
                f"optim.fused=true: torch {torch.__version__} has fused optimiser kernels for "
                f"floating-point parameters on {devices}, not for {unsupported.dtype} "
                f"parameters on {unsupported.device.type}; set optim.fused=null to let "
                "dltrain pick the kernel.")
    if chosen or differentiable or not _fused_supported(params):
        return {}
    return {"fused": True}


def _fused_supported(params: list[torch.Tensor]) -> bool:
    """Whether torch has fused optimiser kernels for all of `params` (their devices and
    dtypes), by torch's own rule, the one its optimisers apply to their default."""
    fused, _ = _default_to_fused_or_foreach(params, differentiable=False, use_fused=True)
    return fused


def _keep_kernels(optimizer: torch.optim.Optimizer, state_dict: dict[str, Any]
                  ) -> dict[str, Any]:
    """A load_state_dict pre-hook: a checkpoint brings the optimiser's numbers, not its kernel.

    torch's load_state_dict replaces every param group's settings with the saved ones, the
    implementation flags included, so a checkpoint saved without fused kernels (an older run,
    another device) would switch them off for the rest of the run, or on where the device has
    none. The groups keep this optimiser's `fused` and `foreach`; torch then lays out the loaded
    state (the step counts) as those kernels want it.
    """
    groups = [{**saved, **{key: group[key] for key in KERNELS if key in group}}
              for saved, group in zip(state_dict["param_groups"], optimizer.param_groups,
                                      strict=False)]  # (a count that differs: torch says so)
    return {**state_dict, "param_groups": groups}


def build_optimizer(cfg: Node, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser of `cfg._target_` over the decay / no-decay parameter groups.

    An optimiser without weight decay (L-BFGS, which also takes a single group) gets the
    parameters as one list. Its kernel follows `kernel_choice`: fused wherever torch has fused
    kernels for the parameters (on the devices they are on).
    """
    parts = getattr(model, "optim_parts", None)
    if parts is not None:  # a model of named parts (a GAN's): an optimiser for each
        return PartOptimizers({
            name: build_optimizer({**cfg, **{k: v for k, v in changes.items() if v is not None}},
                                  module)
            for name, (module, changes) in parts().items()})
    trainable = [p for p in model.parameters() if p.requires_grad]
    if "weight_decay" not in cfg:
        params: Any = trainable
    else:
        params = decay_groups(model, float(cfg["weight_decay"]))
    kernels = kernel_choice(cfg, trainable)
    optimizer = call_target(cfg, "optim", optional=kernels, params=params)
    optimizer.register_load_state_dict_pre_hook(_keep_kernels)
    return optimizer


class PartOptimizers(torch.optim.Optimizer):
    """The optimisers of a model's named parts, as one optimiser to the loop, the schedule
    and the checkpoints (a GAN's generator and discriminator, each with its own settings).

    `param_groups` are the parts' own group dicts, side by side: a schedule that sets their
    rates sets each part's, scaled from that part's own base rate. `step(part=...)` and
    `zero_grad(part=...)` act on one part (all without it); the state is each part's.
    """

    def __init__(self, parts: dict[str, torch.optim.Optimizer]) -> None:
        # Optimizer.__init__ would take the parameters into groups of its own; here the
        # groups stay the parts' (the same dicts), so nothing is copied or kept twice
        self.parts = parts
        self.defaults: dict[str, Any] = {}
        self.state: dict[Any, Any] = {}

    @property  # type: ignore[override]
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        """The parts' groups as they are now (a part's load_state_dict makes new ones)."""
        return [g for opt in self.parts.values() for g in opt.param_groups]

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}: {type(v).__name__}" for k, v in self.parts.items())
        return f"PartOptimizers({inner})"

    def step(self, closure: Any = None, part: str | None = None) -> None:  # type: ignore[override]
        for name in (part,) if part is not None else self.parts:
            self.parts[name].step()

    def zero_grad(self, set_to_none: bool = True, part: str | None = None) -> None:
        for name in (part,) if part is not None else self.parts:
            self.parts[name].zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        return {"state": {}, "param_groups": [],
                "parts": {name: opt.state_dict() for name, opt in self.parts.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        saved = state_dict.get("parts") or {}
        if set(saved) != set(self.parts):
            raise ValueError(f"the checkpoint's optimisers are for the parts {sorted(saved)}, "
                             f"this model's for {sorted(self.parts)}")
        for name, opt in self.parts.items():
            opt.load_state_dict(saved[name])


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int, *,
                  warmup_steps: int | None, min_fraction: float
                  ) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from 0 to the base rate, then cosine annealing to min_fraction of it.

    The factor at step t is t / w during the warm-up of w steps, then
    min_fraction + (1 - min_fraction) * (1 + cos(pi * (t - w) / (T - w))) / 2.
    """
    warmup = round(0.1 * total_steps) if warmup_steps is None else warmup_steps
    decay = max(total_steps - warmup, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return step / warmup
        progress = min((step - warmup) / decay, 1.0)
        return min_fraction + (1 - min_fraction) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _schedule_length(name: str, node: Node, optimizer: torch.optim.Optimizer,
                     total: int) -> dict:
    """What a schedule needs at run time: its length in optimiser steps, in its own terms."""
    if name == "cosine":
        return {"T_max": total}
    if name in ("warmup_cosine", "auto"):
        return {"total_steps": total}
    if name == "onecycle":
        return {"total_steps": total, "max_lr": [g["lr"] for g in optimizer.param_groups]}
    if name == "step" and node["step_size"] is None:
        return {"step_size": max(total // 3, 1)}
    if name == "exponential" and node["gamma"] is None:
        return {"gamma": 0.01 ** (1 / max(total, 1))}  # 1% of the rate at the end
    return {}


def build_scheduler(cfg: Node, optimizer: torch.optim.Optimizer, total_steps: int) -> Any:
    """The learning-rate schedule, or None for `sched=none`.

    Every schedule but `plateau` steps once per optimiser step; `plateau` steps on the
    validation loss after each validation. `sched=auto` (the default) is warmup_cosine,
    except under L-BFGS: a full-batch method with a line search of its own, which a warm-up
    from a rate of zero would only stall (measured on real data: docs/training.md).
    """
    name = str(cfg["name"])
    if name == "none" or (name == "auto" and isinstance(optimizer, torch.optim.LBFGS)):
        return None
    # optim=adam_lbfgs: the schedule is Adam's, over its phase (L-BFGS sets its own steps)
    total_steps = min(total_steps, getattr(optimizer, "switch_at", total_steps))
    runtime = _schedule_length(name, cfg, optimizer, total_steps)
    return call_target(cfg, "sched", optimizer=optimizer, **runtime)


def steps_per_batch(scheduler: Any) -> bool:
    """Whether the schedule is stepped per optimiser step (else on validation metrics)."""
    return scheduler is not None and not isinstance(
        scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)


@dataclass(frozen=True)
class Penalty:
    """coefficient * sum over weights of |w|^power, added to the training loss."""

    coefficient: float
    power: int  # 1 for L1, 2 for L2

    def __call__(self, weights: list[torch.Tensor]) -> torch.Tensor:
        return self.coefficient * self.total(weights)

    def total(self, weights: list[torch.Tensor]) -> torch.Tensor:
        """sum over weights of |w|^power, before the coefficient."""
        if self.power == 1:
            return sum(w.abs().sum() for w in weights)  # type: ignore[return-value]
        return sum(w.square().sum() for w in weights)  # type: ignore[return-value]


def penalties(cfg: Node) -> list[Penalty]:
    """The L1 / L2 terms that `penalty.l1` and `penalty.l2` switch on (zero means off)."""
    terms = [Penalty(float(cfg["l1"]), 1), Penalty(float(cfg["l2"]), 2)]
    return [t for t in terms if t.coefficient > 0]


def penalised_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors the penalties act on: the same ones weight decay acts on."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
