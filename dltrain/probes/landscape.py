"""The loss landscape of the trained network, at the end of a run.

- 1-D: the loss along the straight line from the initial weights (alpha = 0) to the final ones
  (alpha = 1), a little beyond both (Goodfellow et al. 2015).
- 2-D: the loss on a grid around the final weights, theta* + a d1 + b d2, along two random
  directions normalised filter by filter to the norms of the weights' own filters (Li et al.
  2018), so that the picture is comparable between networks; biases and normalisation
  parameters are left out of the directions, as in the paper.

Both on a fixed batch of the training split, in eval mode; the directions come from a generator
of their own, so the training's random numbers are untouched, and the weights are put back
exactly. Written: RUN_DIR/landscape.npz, RUN_DIR/landscape.png and the TensorBoard image
`probe/landscape`. The initial weights are kept in RUN_DIR/checkpoints/init.pt at step 0 (a
resumed run still has them).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dltrain.io import atomic_write
from dltrain.probes.context import ProbeContext, looking
from dltrain.probes.tags import LANDSCAPE
from dltrain.training.checkpoint import load_checkpoint, save_checkpoint
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState


def filter_normalised_direction(params: list[torch.Tensor], gen: torch.Generator
                                ) -> list[torch.Tensor]:
    """A random direction of the same shapes as `params`: each filter (a slice along the first
    axis: a neuron's incoming weights, a conv filter) scaled to the norm of the weights' own
    filter; zero for one-dimensional parameters (biases, normalisation)."""
    direction = []
    for p in params:
        d = torch.randn(p.shape, generator=gen, dtype=torch.float32)
        if p.ndim <= 1:
            d.zero_()
        else:
            w = p.detach().float().cpu()
            dims = tuple(range(1, p.ndim))
            d *= w.norm(dim=dims, keepdim=True) / d.norm(dim=dims, keepdim=True).clamp_min(1e-10)
        direction.append(d.to(device=p.device, dtype=p.dtype))
    return direction


def loss_at(model: nn.Module, loss_fn: Callable[..., torch.Tensor], x: torch.Tensor,
            y: torch.Tensor) -> float:
    """The loss at the model's current weights: `loss_fn(out, y, x)` (ProbeContext.criterion)."""
    with looking(model):
        return float(loss_fn(model(x), y, x))


class Landscape(NoHooks):
    """The 1-D interpolation and the 2-D surface, computed once at the end."""

    def __init__(self, ctx: ProbeContext, *, resolution: int, span: float, points: int,
                 line: Sequence[float], seed: int) -> None:
        self.ctx = ctx
        self.resolution, self.span = resolution, span
        self.points, self.line = points, (float(line[0]), float(line[1]))
        self.seed = seed
        self.params = [p for p in ctx.model.parameters() if p.requires_grad]
        self.init_path = ctx.run_dir / "checkpoints" / "init.pt"

    def start(self, state: TrainState) -> None:
        save_checkpoint(self.init_path, {"params": [p.detach().cpu() for p in self.params]})

    def end(self, state: TrainState) -> None:
        result = self.measure()
        path = self.ctx.run_dir / "landscape.npz"
        atomic_write(path, lambda f: np.savez(f, **result))
        from dltrain.probes.plots import landscape_png

        png = landscape_png(result, title=f"loss landscape · step {state.step}")
        atomic_write(self.ctx.run_dir / "landscape.png", lambda f: f.write(png))
        self.ctx.logger.log_image(LANDSCAPE, png, state.step)

    def measure(self) -> dict[str, np.ndarray]:
        """Every number of the picture, the weights left exactly as they were."""
        model, loss_fn = self.ctx.model, self.ctx.criterion
        batch = self.ctx.probe_batch("train")
        final = [p.detach().clone() for p in self.params]
        gen = torch.Generator().manual_seed(self.seed)  # the training's generators stay untouched
        d1 = filter_normalised_direction(self.params, gen)
        d2 = filter_normalised_direction(self.params, gen)
        axis = np.linspace(-self.span, self.span, self.resolution)
        alphas = np.linspace(*self.line, self.points)
        surface = np.empty((self.resolution, self.resolution))
        line = np.full(self.points, np.nan)
        try:
            with torch.no_grad():
                for i, b in enumerate(axis):  # rows: the second direction
                    for j, a in enumerate(axis):
                        for p, w, u, v in zip(self.params, final, d1, d2, strict=True):
                            p.copy_(w + float(a) * u + float(b) * v)
                        surface[i, j] = loss_at(model, loss_fn, batch.x, batch.y)
                initial = self._initial()
                if initial is not None:
                    for k, alpha in enumerate(alphas):
                        for p, w0, w1 in zip(self.params, initial, final, strict=True):
                            # this form is exact at alpha = 0 and 1
                            p.copy_((1.0 - float(alpha)) * w0 + float(alpha) * w1)
                        line[k] = loss_at(model, loss_fn, batch.x, batch.y)
        finally:
            with torch.no_grad():
                for p, w in zip(self.params, final, strict=True):
                    p.copy_(w)
        final_loss = loss_at(model, loss_fn, batch.x, batch.y)
        return {"axis": axis, "surface": surface, "alphas": alphas, "line": line,
                "final_loss": np.float64(final_loss), "samples": np.int64(len(batch))}

    def _initial(self) -> list[torch.Tensor] | None:
        """The weights at step 0, on the parameters' devices (None if never saved)."""
        if not Path(self.init_path).is_file():
            return None
        saved = load_checkpoint(self.init_path)["params"]
        if [t.shape for t in saved] != [p.shape for p in self.params]:
            return None
        return [t.to(device=p.device, dtype=p.dtype) for t, p in zip(saved, self.params,
                                                                      strict=True)]
