"""Decision regions of a classifier of 2-D points, with the training points on top.

Drawn at step 0, every `every` steps and at the end, in the data's own coordinates (the inputs
un-normalised): TensorBoard images `probe/boundary` (step through them with the slider to watch
the boundary form; with `images=false` only the one at the end), RUN_DIR/boundary.png and
RUN_DIR/boundary.npz (the grid and the class the model gives every grid point) at the end.
"""

from __future__ import annotations

import numpy as np
import torch

from dltrain.data.spec import DataSpec
from dltrain.io import atomic_write
from dltrain.probes.context import ProbeContext, looking
from dltrain.probes.tags import BOUNDARY
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState


def refusal(spec: DataSpec) -> str | None:
    """Why this probe cannot look at `spec`'s data, or None."""
    if spec.task == "classification" and spec.kind == "vector" and spec.input_shape == (2,):
        return None
    return ("probe=[boundary] draws the decision regions of a classifier of 2-D points; "
            f"data={spec.name} is not such data (use data=moons, circles, spirals or blobs)")


def predicted_class(out: torch.Tensor) -> torch.Tensor:
    """Class ids from logits: argmax, or the sign of a single logit (binary losses)."""
    return (out[:, 0] > 0).long() if out.shape[-1] == 1 else out.argmax(dim=-1)


def classify(model: torch.nn.Module, x: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    with looking(model):
        return torch.cat([predicted_class(model(x[i:i + chunk]))
                          for i in range(0, len(x), chunk)])


class Boundary(NoHooks):
    def __init__(self, ctx: ProbeContext, *, resolution: int, points: int, every: int | None,
                 images: bool) -> None:
        self.ctx, self.every, self.images = ctx, every, images
        norm = ctx.data.norm
        self.mean = np.asarray(norm.get("mean", [0.0, 0.0]), dtype=np.float64)
        self.std = np.asarray(norm.get("std", [1.0, 1.0]), dtype=np.float64)
        train = ctx.data.train
        raw = train.x.detach().cpu().double().numpy() * self.std + self.mean
        lo, hi = raw.min(axis=0), raw.max(axis=0)
        pad = 0.1 * (hi - lo)
        self.xs = np.linspace(lo[0] - pad[0], hi[0] + pad[0], resolution)
        self.ys = np.linspace(lo[1] - pad[1], hi[1] + pad[1], resolution)
        gx, gy = np.meshgrid(self.xs, self.ys)  # (resolution, resolution): rows are y
        grid = (np.stack([gx.ravel(), gy.ravel()], axis=1) - self.mean) / self.std
        self.grid = torch.as_tensor(grid, dtype=train.x.dtype, device=train.x.device)
        self.points = raw[:points]
        self.labels = train.y[:points].detach().cpu().numpy()
        self.classes = ctx.spec.num_classes or 2
        self.drawn: tuple[int, bytes] | None = None

    def start(self, state: TrainState) -> None:
        if self.images:
            self.draw(state)

    def step(self, state: TrainState) -> None:
        if self.images and self.ctx.due(state.step, self.every):
            self.draw(state)

    def regions(self) -> np.ndarray:
        """The class the model gives each grid point, (len(ys), len(xs))."""
        cls = classify(self.ctx.model, self.grid)
        return cls.cpu().numpy().reshape(len(self.ys), len(self.xs))

    def draw(self, state: TrainState) -> bytes:
        from dltrain.probes.plots import boundary_png

        regions = self.regions()
        png = boundary_png(self.xs, self.ys, regions, self.points, self.labels, self.classes,
                           title=f"decision regions · step {state.step}",
                           names=self.ctx.spec.class_names)
        self.ctx.logger.log_image(BOUNDARY, png, state.step)
        self.drawn = (state.step, png)
        return png

    def end(self, state: TrainState) -> None:
        png = self.drawn[1] if self.drawn and self.drawn[0] == state.step else self.draw(state)
        atomic_write(self.ctx.run_dir / "boundary.png", lambda f: f.write(png))
        train = self.ctx.data.train
        train_classes = classify(self.ctx.model, train.x).cpu().numpy()
        result = {"xs": self.xs, "ys": self.ys, "regions": self.regions(),
                  "points": self.points, "labels": self.labels,
                  "train_accuracy": np.float64((train_classes == train.y.cpu().numpy()).mean())}
        atomic_write(self.ctx.run_dir / "boundary.npz", lambda f: np.savez(f, **result))
