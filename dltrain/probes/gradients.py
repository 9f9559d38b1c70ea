"""How the gradient flows backward: per layer, the norm of its gradient, the size of the update
the optimiser made relative to the weights (a healthy ratio is around 1e-3), and histograms of
gradients and weights.

At step 0 (before any step) the gradient is that of the loss on the probe batch, computed with
`torch.autograd.grad` so that no `.grad` is written; at later probe points it is the gradient
the optimiser has just applied, still in `.grad`.

Tags: `probe/gradients/<layer>/norm`, `probe/gradients/<layer>/update_ratio` (scalars),
`probe/gradients/total_norm`, and histograms `probe/gradients/<layer>`, `probe/weights/<layer>`,
where <layer> is the path of the module that holds the parameters. A recurrent net adds the
gradient reaching each time step, ||dL/dh_t|| against t (probes/state_gradients.py).
"""

from __future__ import annotations

import torch
from torch import nn

from dltrain.probes import state_gradients
from dltrain.probes.context import ProbeContext, layer_of, sample_values
from dltrain.probes.tags import GRADIENTS, WEIGHTS, tag
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState


def parameter_layers(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """Trainable parameters grouped by the module that holds them, in model order."""
    layers: dict[str, list[nn.Parameter]] = {}
    for name, module in model.named_modules():
        params = [p for p in module.parameters(recurse=False) if p.requires_grad]
        if params:
            layers[layer_of(name)] = params
    return layers


def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float())
                                                 for t in tensors]))


def gradient_norms(grads: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    """{"<layer>/norm", ..., "total_norm"}: the L2 norm of each layer's gradient and of all."""
    names = [f"{layer}/norm" for layer in grads]
    norms = [_norm(g) for g in grads.values()]
    values = torch.stack([*norms, torch.linalg.vector_norm(torch.stack(norms))]).tolist()
    return dict(zip([*names, "total_norm"], values, strict=True))


def update_ratios(before: dict[str, list[torch.Tensor]], layers: dict[str, list[nn.Parameter]]
                  ) -> dict[str, float]:
    """{"<layer>/update_ratio"}: ||w_after - w_before|| / ||w_before|| of each layer."""
    names, ratios = [], []
    for layer, old in before.items():
        new = [p.detach() for p in layers[layer]]
        names.append(f"{layer}/update_ratio")
        ratios.append(_norm([n - o for n, o in zip(new, old, strict=True)])
                      / _norm(old).clamp_min(1e-12))
    return dict(zip(names, torch.stack(ratios).tolist(), strict=True)) if ratios else {}


class Gradients(NoHooks):
    """Gradient norms and update-to-weight ratios at step 0 and every `every` steps."""

    def __init__(self, ctx: ProbeContext, *, histograms: bool, histogram_values: int,
                 every: int | None) -> None:
        self.ctx = ctx
        self.histograms = histograms
        self.limit = histogram_values
        self.every = every
        self.layers = parameter_layers(ctx.model)
        self.before: dict[str, list[torch.Tensor]] | None = None  # weights before a probe step

    def start(self, state: TrainState) -> None:
        model, batch = self.ctx.model, self.ctx.probe_batch("train")
        was_training = model.training
        model.eval()  # as every probe: no dropout draw, no batch-norm statistics
        try:
            params = [p for ps in self.layers.values() for p in ps]
            loss = self.ctx.criterion(model(batch.x), batch.y, batch.x)
            flat = torch.autograd.grad(loss, params, allow_unused=True)
        finally:
            model.train(was_training)
        grads, i = {}, 0
        for layer, ps in self.layers.items():
            grads[layer] = [torch.zeros_like(p) if g is None else g
                            for p, g in zip(ps, flat[i:i + len(ps)], strict=True)]
            i += len(ps)
        self._log(grads, {}, state.step)
        self._log_states(state.step)
        self._remember(state.step)

    def step(self, state: TrainState) -> None:
        if self.ctx.due(state.step, self.every):
            grads = {layer: [p.grad.detach() for p in ps if p.grad is not None]
                     for layer, ps in self.layers.items()}
            grads = {layer: g for layer, g in grads.items() if g}
            ratios = update_ratios(self.before, self.layers) if self.before else {}
            self._log(grads, ratios, state.step)
            self._log_states(state.step)
            self.before = None
        self._remember(state.step)

    def _remember(self, step: int) -> None:
        """Keep a copy of the weights when the next step is a probe point, for its update."""
        if self.ctx.due(step + 1, self.every):
            self.before = {layer: [p.detach().clone() for p in ps]
                           for layer, ps in self.layers.items()}

    def _log_states(self, step: int) -> None:
        """A recurrent net's ||dL/dh_t|| against t (probes/state_gradients.py): scalars and a
        picture; nothing for a model without time steps."""
        norms = state_gradients.state_gradients(self.ctx.model, self.ctx.criterion,
                                                self.ctx.probe_batch("train"))
        if norms is None:
            return
        self.ctx.logger.log_metrics(state_gradients.scalars(norms), step)
        self.ctx.logger.log_image(state_gradients.STATE, state_gradients.picture(norms, step),
                                  step)

    def _log(self, grads: dict[str, list[torch.Tensor]], ratios: dict[str, float],
             step: int) -> None:
        if not grads:
            return
        scalars = {**gradient_norms(grads), **ratios}
        self.ctx.logger.log_metrics({tag(GRADIENTS, k): v for k, v in scalars.items()}, step)
        if self.histograms:
            for layer, g in grads.items():
                self.ctx.logger.log_histogram(
                    tag(GRADIENTS, layer),
                    sample_values(torch.cat([t.flatten() for t in g]), self.limit), step)
                self.ctx.logger.log_histogram(
                    tag(WEIGHTS, layer),
                    sample_values(torch.cat([p.detach().flatten() for p in self.layers[layer]]),
                                  self.limit), step)
