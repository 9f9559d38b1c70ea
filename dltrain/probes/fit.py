"""A 1-D regression's fit: the true function, the noisy training points and the prediction.

Drawn at step 0, every `every` steps and at the end: TensorBoard images `probe/fit` (with
`images=false` only the one at the end), RUN_DIR/fit.png, and RUN_DIR/fit.npz with the numbers
of the final weights: the prediction on a fixed grid over the data's input range (the same grid
in every run of the same data, so a sweep can average predictions over training sets: bias and
variance), the true function there, the training points with their predictions, and the
training and test mean squared errors. The last two are also logged as `probe/fit/train_mse`
and `probe/fit/test_mse`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from dltrain.data import synthetic
from dltrain.data.spec import DataSpec, Split, TargetScale
from dltrain.io import atomic_write
from dltrain.probes.context import ProbeContext, looking
from dltrain.probes.tags import FIT, FIT_FILE, tag
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState

# The generated regression data sets: their true function and their input range, from the keys
# their own option in conf/data/ defines (periods of sine, coefficients and x_range of poly).
TRUTHS: dict[str, Callable[[torch.Tensor, Mapping[str, Any]], torch.Tensor]] = {
    "sine": lambda x, cfg: synthetic.sine_truth(x),
    "poly": lambda x, cfg: synthetic.poly_truth(x, list(cfg["coefficients"])),
}
RANGES: dict[str, Callable[[Mapping[str, Any]], tuple[float, float]]] = {
    "sine": lambda cfg: (-float(cfg["periods"]) * math.pi, float(cfg["periods"]) * math.pi),
    "poly": lambda cfg: (float(cfg["x_range"][0]), float(cfg["x_range"][1])),
}


def refusal(spec: DataSpec) -> str | None:
    """Why this probe cannot look at `spec`'s data, or None."""
    if spec.task == "regression" and spec.input_shape == (1,) and spec.out_features == 1:
        return None
    return ("probe=[fit] draws a 1-D regression (one input, one output); "
            f"data={spec.name} is not such data (use data=sine, data=poly or a table of one "
            "feature and one target)")


def predict(model: torch.nn.Module, x: torch.Tensor, scale: TargetScale | None = None,
            chunk: int = 8192) -> torch.Tensor:
    """The model's outputs on `x`, in the data's units (a file's targets are standardised for
    training: `scale` turns them back)."""
    with looking(model):
        out = torch.cat([model(x[i:i + chunk]).float() for i in range(0, len(x), chunk)])
    return out if scale is None else scale.restore(out)


def mse(model: torch.nn.Module, split: Split, scale: TargetScale | None = None) -> float:
    y = split.y.float() if scale is None else scale.restore(split.y.float())
    return float(((predict(model, split.x, scale) - y) ** 2).mean())


class Fit(NoHooks):
    def __init__(self, ctx: ProbeContext, *, points: int, every: int | None,
                 images: bool) -> None:
        self.ctx, self.every, self.images = ctx, every, images
        cfg, name = ctx.data_cfg, ctx.spec.name
        self.mean = float(ctx.data.norm.get("mean", [0.0])[0])
        self.std = float(ctx.data.norm.get("std", [1.0])[0])
        train, self.scale = ctx.data.train, ctx.data.target_scale
        self.train_x = train.x.detach().cpu().double().numpy()[:, 0] * self.std + self.mean
        train_y = train.y.detach().float() if self.scale is None else self.scale.restore(
            train.y.detach().float())
        self.train_y = train_y.cpu().double().numpy()[:, 0]
        lo, hi = RANGES[name](cfg) if name in RANGES else (self.train_x.min(), self.train_x.max())
        self.x = np.linspace(lo, hi, points)
        self.truth = (TRUTHS[name](torch.as_tensor(self.x), cfg).numpy() if name in TRUTHS
                      else None)
        self.grid = torch.as_tensor((self.x[:, None] - self.mean) / self.std,
                                    dtype=train.x.dtype, device=train.x.device)
        # Optional: the probe takes any 1-D regression data, and only generated data (sine,
        # poly) have a noise level in their conf/data/ option; elsewhere it is unknown (nan).
        self.noise = float(cfg["noise"]) if "noise" in cfg else math.nan
        self.drawn: tuple[int, bytes] | None = None

    def start(self, state: TrainState) -> None:
        if self.images:
            self.draw(state)

    def step(self, state: TrainState) -> None:
        if self.images and self.ctx.due(state.step, self.every):
            self.draw(state)

    def draw(self, state: TrainState) -> bytes:
        from dltrain.probes.plots import fit_png

        pred = predict(self.ctx.model, self.grid, self.scale).cpu().numpy()[:, 0]
        png = fit_png(self.x, self.truth, pred, self.train_x, self.train_y,
                      title=f"fit · step {state.step}")
        self.ctx.logger.log_image(FIT, png, state.step)
        self.drawn = (state.step, png)
        return png

    def end(self, state: TrainState) -> None:
        png = self.drawn[1] if self.drawn and self.drawn[0] == state.step else self.draw(state)
        atomic_write(self.ctx.run_dir / "fit.png", lambda f: f.write(png))
        model, data = self.ctx.model, self.ctx.data
        result = {
            "x": self.x,
            "pred": predict(model, self.grid, self.scale).cpu().double().numpy()[:, 0],
            "train_x": self.train_x,
            "train_y": self.train_y,
            "train_pred": predict(model, data.train.x, self.scale).cpu().double().numpy()[:, 0],
            "train_mse": np.float64(mse(model, data.train, self.scale)),
            "test_mse": np.float64(mse(model, data.test, self.scale)),
            "noise": np.float64(self.noise),
        }
        if self.truth is not None:
            result["truth"] = self.truth
        atomic_write(self.ctx.run_dir / FIT_FILE, lambda f: np.savez(f, **result))
        self.ctx.logger.log_metrics({tag(FIT, "train_mse"): float(result["train_mse"]),
                                     tag(FIT, "test_mse"): float(result["test_mse"])},
                                    state.step)
