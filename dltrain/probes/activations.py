"""How the signal flows forward: per layer, the mean and spread of its output on the probe batch,
and for ReLU layers the fraction of dead units (units that are off for every probe sample).

At initialisation this is the lecture's experiment on weight scales: in a deep linear network
with Var(w) = 1/N_in (LeCun) the std of the activations stays the same from layer to layer;
with a fixed small std it shrinks geometrically with depth.

Tags: `probe/activations/<layer>/mean`, `.../std`, `.../dead` (scalars) and
`probe/activations/<layer>` (histogram), where <layer> is the module's path in the model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dltrain.probes.context import ProbeContext, layer_of, looking, sample_values
from dltrain.probes.tags import ACTIVATIONS, tag
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState


def watched_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The modules whose outputs are a layer's activations: every activation function of the
    model families (their parts are named `act`, `act1`, ...) and the output layer `head`."""
    return [(name, m) for name, m in model.named_modules()
            if name.rpartition(".")[2].startswith("act") or name == "head"]


def layer_outputs(model: nn.Module, x: torch.Tensor,
                  layers: list[tuple[str, nn.Module]]) -> dict[str, torch.Tensor]:
    """The output of each of `layers` for input `x`, in the order the forward pass reaches
    them (eval mode, no autograd)."""
    outputs: dict[str, torch.Tensor] = {}

    def keep(name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor):
                outputs[name] = out.detach()
        return hook

    handles = [m.register_forward_hook(keep(layer_of(name))) for name, m in layers]
    try:
        with looking(model):
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def dead_fraction(out: torch.Tensor) -> torch.Tensor:
    """Fraction of units (every output element but the batch axis) that are zero for every
    sample of the batch."""
    alive = (out.reshape(out.shape[0], -1) > 0).any(dim=0)
    return 1.0 - alive.float().mean()


def activation_stats(outputs: dict[str, torch.Tensor], relu: set[str]) -> dict[str, float]:
    """{"<layer>/mean", "<layer>/std", "<layer>/dead" (ReLU layers)}: one host sync for all."""
    names: list[str] = []
    values: list[torch.Tensor] = []
    for layer, out in outputs.items():
        out = out.float()
        names += [f"{layer}/mean", f"{layer}/std"]
        values += [out.mean(), out.std()]
        if layer in relu:
            names.append(f"{layer}/dead")
            values.append(dead_fraction(out))
    return dict(zip(names, torch.stack(values).tolist(), strict=True)) if values else {}


class Activations(NoHooks):
    """Activation statistics at step 0 and every `every` steps."""

    def __init__(self, ctx: ProbeContext, *, histograms: bool, histogram_values: int,
                 every: int | None) -> None:
        self.ctx = ctx
        self.histograms = histograms
        self.limit = histogram_values
        self.every = every
        self.layers = watched_layers(ctx.model)
        self.relu = {layer_of(n) for n, m in self.layers if isinstance(m, nn.ReLU)}
        self.batch = ctx.probe_batch("val")

    def start(self, state: TrainState) -> None:
        self.look(state.step)

    def step(self, state: TrainState) -> None:
        if self.ctx.due(state.step, self.every):
            self.look(state.step)

    def look(self, step: int) -> None:
        outputs = layer_outputs(self.ctx.model, self.batch.x, self.layers)
        stats = activation_stats(outputs, self.relu)
        self.ctx.logger.log_metrics({tag(ACTIVATIONS, k): v for k, v in stats.items()}, step)
        if self.histograms:
            for layer, out in outputs.items():
                self.ctx.logger.log_histogram(tag(ACTIVATIONS, layer),
                                              sample_values(out, self.limit), step)
