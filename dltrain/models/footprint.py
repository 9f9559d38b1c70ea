"""A model's memory before it is built: parameters, gradients, optimiser state, activations.

`model.hidden=[1000000000]` or `model.width=100000` asks for more memory than a machine has;
built for real, such a model fails deep inside the allocator (or the kernel kills the process
without a word). `check_parameters` first builds the model on PyTorch's meta device, where
tensors have shapes but no storage: its parameters are counted exactly, for any family (a
user's own class too), nothing is allocated and no random number is drawn, and a model whose
parameters, gradients and optimiser state cannot fit is refused with the numbers. Once the
real model is built, `check_activations` passes one sample through it to measure what a
training batch keeps for the backward pass (a forward pass of a whole batch on the meta
device would cost more than it tells: recurrent layers unroll there step by step), and
refuses a batch that cannot fit beside the gradients and the optimiser's state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from dltrain.data.memory import short_of, size_text
from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models import model_node
from dltrain.results import option_label
from dltrain.targets import call_target

BYTES = 4  # float32 parameters, gradients and optimiser state
# The keys of the families that set a model's size, for the advice of a refusal.
SIZE_KEYS = ("channels", "hidden", "width", "depth", "blocks", "mlp_ratio", "hidden_size",
             "layers", "latent")


@dataclass(frozen=True)
class Footprint:
    """What a model's parameters take in memory to train (or, without an optimiser, to
    evaluate): the parameters and the copies that training keeps of them."""

    params: int
    largest: str  # the module holding the most parameters, "hidden.0.linear"
    largest_params: int
    copies: int  # further copies of the parameters: the gradient and the optimiser's state
    state: str  # what those copies are, in words: "gradients and Adam's two moments"

    @property
    def weights(self) -> int:
        """Bytes of the parameters and their copies."""
        return self.params * BYTES * (1 + self.copies)


def optimiser_copies(optim: Mapping[str, Any] | None) -> tuple[int, str]:
    """(copies of the parameters an optimiser keeps besides them, in words) for the node
    `optim` (its `_target_` and keys); (0, "") to evaluate, where there is no optimiser."""
    if optim is None:
        return 0, ""
    name = str(optim["_target_"]).rpartition(".")[2]
    momentum = bool(optim.get("momentum"))  # (SGD and RMSprop only have the key)
    if name in ("Adam", "AdamW", "NAdam", "RAdam", "Adamax"):
        return 3, f"gradients and {name}'s two moments"
    if name == "SGD":
        return (2, "gradients and SGD's momentum") if momentum else (1, "gradients")
    if name == "RMSprop":
        extra = int(momentum) + int(bool(optim.get("centered")))
        return 2 + extra, "gradients and RMSprop's averages"
    if name == "LBFGS":
        history = int(optim["history_size"])
        return 2 * history + 3, f"gradients and L-BFGS's {history} pairs of past steps"
    return 3, f"gradients and the state of {name}"  # as much as Adam: a guess


def _meta_model(model_cfg: Mapping[str, Any], spec: DataSpec) -> nn.Module | None:
    """The model built on the meta device (no storage), or None where it cannot be built
    there (a user's class that needs real tensors): then nothing is estimated."""
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            return call_target(model_node(model_cfg, spec), "model", spec=spec)
    except ConfigError:
        raise  # the same sentence the real build would give, before anything is paid
    except Exception:
        return None


def parameter_footprint(model_cfg: Mapping[str, Any], spec: DataSpec,
                        optim: Mapping[str, Any] | None) -> Footprint | None:
    """The parameters of the model of `model_cfg` for `spec`'s data, counted on the meta
    device, with the copies `optim` keeps; None where the model cannot be built there."""
    model = _meta_model(model_cfg, spec)
    if model is None:
        return None
    params = sum(p.numel() for p in model.parameters())
    own = [(name, sum(p.numel() for p in m.parameters(recurse=False)))
           for name, m in model.named_modules()]
    largest, largest_params = max(own, key=lambda item: item[1], default=("", 0))
    copies, state = optimiser_copies(optim)
    return Footprint(params, largest, largest_params, copies, state)


def model_label(model_cfg: Mapping[str, Any]) -> str:
    """model=NAME (the user's class where it replaces an option's), for a sentence."""
    if "name" not in model_cfg:  # a node written by hand may have only its `_target_`
        return f"model._target_={model_cfg['_target_']}"
    return f"model={option_label(model_cfg)}"


def _smaller(model_cfg: Mapping[str, Any]) -> str:
    keys = ", ".join(f"model.{k}" for k in SIZE_KEYS if model_cfg.get(k) is not None)
    return f"a smaller model ({keys})" if keys else "a smaller model"


def check_parameters(model_cfg: Mapping[str, Any], spec: DataSpec,
                     optim: Mapping[str, Any] | None, device: torch.device
                     ) -> Footprint | None:
    """Before the model is built: refuse (ConfigError, with the numbers) one whose
    parameters and their copies need more memory than is free on `device`."""
    found = parameter_footprint(model_cfg, spec, optim)
    if found is None:
        return None
    # built on the host, then moved: there the parameters alone, on the device their copies
    short = short_of(found.weights, device, host=found.params * BYTES)
    if short is None:
        return found
    room, wanted = short
    largest = (f" (the largest layer, {found.largest}, holds {found.largest_params:,})"
               if found.largest and found.largest_params * 2 > found.params else "")
    what = f" with their {found.state}" if found.state else ""
    what = what if wanted == found.weights else ""
    raise ConfigError(f"{model_label(model_cfg)} has {found.params:,} parameters{largest}: they "
                      f"need about {size_text(wanted)}{what}, and {room.where} has "
                      f"{size_text(room.free)} free; use {_smaller(model_cfg)}.")


def activation_bytes(model: nn.Module, spec: DataSpec, batch: int) -> int:
    """Rough bytes a training step on `batch` samples keeps for its backward pass: every
    leaf module's output, measured on one sample (zeros) and scaled to the batch.

    The sample passes in eval mode without gradients, its random numbers forked away: the
    model, its statistics and the run's random state are as they were. 0 where the pass
    fails (a user's model that wants other inputs)."""
    total = 0

    def count(_module: nn.Module, inputs: Any, output: Any) -> None:
        nonlocal total
        # a view of an input (flatten, identity, an in-place activation) costs nothing more
        given = {t.untyped_storage().data_ptr() for t in inputs if isinstance(t, torch.Tensor)}
        for out in output if isinstance(output, tuple | list) else (output,):
            if isinstance(out, torch.Tensor) and out.untyped_storage().data_ptr() not in given:
                total += out.numel() * out.element_size()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(count) for m in leaves]
    device = next(model.parameters(), torch.empty(0)).device
    x = torch.zeros((1, *spec.input_shape), device=device,
                    dtype=torch.long if spec.kind == "tokens" else torch.float32)
    training = model.training
    try:
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            model.eval()(x)
    except Exception:
        return 0
    finally:
        model.train(training)
        for handle in handles:
            handle.remove()
    return total * batch


def check_activations(model: nn.Module, model_cfg: Mapping[str, Any], spec: DataSpec,
                      found: Footprint, batch: int, device: torch.device,
                      precision: str = "32") -> None:
    """After the model is built, before its optimiser: refuse (ConfigError, with the
    numbers) a run whose gradients, optimiser state and one batch's activations need more
    memory than is still free on `device`. 16-bit precision halves the activations."""
    activations = activation_bytes(model, spec, batch) // (1 if precision == "32" else 2)
    state = found.params * BYTES * found.copies
    short = short_of(state + activations, device)  # (both on the device)
    if short is None:
        return
    room = short[0]
    raise ConfigError(f"{model_label(model_cfg)} needs about {size_text(state + activations)} more "
                      f"to train on batches of {batch}: {size_text(state)} for the "
                      f"{found.state} of its {found.params:,} parameters, and about "
                      f"{size_text(activations)} for one batch's activations; {room.where} "
                      f"has {size_text(room.free)} free: use a smaller data.batch_size or "
                      f"{_smaller(model_cfg)}.")
