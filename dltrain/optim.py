"""Optimisers over parameter groups, learning-rate schedules, and explicit penalty terms."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dltrain.targets import call_target


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


def build_optimizer(cfg: DictConfig, model: nn.Module, device: torch.device | None = None
                    ) -> torch.optim.Optimizer:
    """The optimiser of `cfg._target_` over the decay / no-decay parameter groups.

    An optimiser without weight decay (L-BFGS, which also takes a single group) gets the
    parameters as one list. On a GPU, optimisers that have fused kernels (SGD, Adam, AdamW)
    use them unless the config says `fused: false`: one kernel for all parameters instead of
    several per tensor, and the same update.
    """
    fused = {"fused": True} if device is not None and device.type == "cuda" else {}
    if "weight_decay" not in cfg:
        params: Any = [p for p in model.parameters() if p.requires_grad]
    else:
        params = decay_groups(model, float(cfg.weight_decay))
    return call_target(cfg, "optim", optional=fused, params=params)


def warmup_cosine(optimizer: torch.optim.Optimizer, total_steps: int,
                  warmup_steps: int | None = None, min_fraction: float = 0.0
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


def _schedule_length(name: str, node: DictConfig, optimizer: torch.optim.Optimizer,
                     total: int) -> dict:
    """What a schedule needs at run time: its length in optimiser steps, in its own terms."""
    if name == "cosine":
        return {"T_max": total}
    if name == "warmup_cosine":
        return {"total_steps": total}
    if name == "onecycle":
        return {"total_steps": total, "max_lr": [g["lr"] for g in optimizer.param_groups]}
    if name == "step" and node.get("step_size") is None:
        return {"step_size": max(total // 3, 1)}
    if name == "exponential" and node.get("gamma") is None:
        return {"gamma": 0.01 ** (1 / max(total, 1))}  # 1% of the rate at the end
    return {}


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int
                    ) -> Any:
    """The learning-rate schedule, or None for `sched=none`.

    Every schedule but `plateau` steps once per optimiser step; `plateau` steps on the
    validation loss after each validation.
    """
    if cfg.name == "none":
        return None
    runtime = _schedule_length(str(cfg.name), cfg, optimizer, total_steps)
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


def penalties(cfg: DictConfig) -> list[Penalty]:
    """The L1 / L2 terms that `penalty.l1` and `penalty.l2` switch on (zero means off)."""
    terms = [Penalty(float(cfg.get("l1", 0.0)), 1), Penalty(float(cfg.get("l2", 0.0)), 2)]
    return [t for t in terms if t.coefficient > 0]


def penalised_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors the penalties act on: the same ones weight decay acts on."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
