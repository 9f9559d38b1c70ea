"""probe=[field] for a physics-informed run: the reference, the prediction, their error and the
equation's residual over the domain, as one picture.

On the evaluation grid (pde.eval): images over (x, t) or (x, y) for a 2-D domain, with a fifth
panel of `samples` slices u(x) at evenly spaced t (or y), reference dashed, as Raissi et al.
draw Burgers' shock; curves over x for a 1-D domain (whose one curve is its only slice).
TensorBoard image `probe/field` at step 0 and every `every` steps; at the end RUN_DIR/field.png
and RUN_DIR/field.npz (the grid's axes and the four fields, float64).
"""

from __future__ import annotations

import numpy as np
import torch

from dltrain.io import atomic_write
from dltrain.pinn.loss import PinnLoss
from dltrain.pinn.pde import Field
from dltrain.probes.context import ProbeContext
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState

TAG = "probe/field"
CHUNK = 16384  # grid points per forward pass (the residual keeps a double-backward graph)


def fields(model: torch.nn.Module, loss: PinnLoss, x: torch.Tensor
           ) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, |residual|) of the model at the points `x` (its own mode kept)."""
    was_training = model.training
    model.eval()
    box, eq = loss.problem.equation.box, loss.problem.equation
    preds, residuals = [], []
    try:
        with torch.enable_grad():
            for i in range(0, len(x), CHUNK):
                xi = x[i:i + CHUNK].detach().requires_grad_(True)
                u = model(xi)
                r = eq.residual(Field(xi, u, box), loss.coefficients())
                preds.append(u.detach().reshape(-1).double().cpu())
                residuals.append(r.detach().abs().double().cpu())
    finally:
        model.train(was_training)
    return torch.cat(preds).numpy(), torch.cat(residuals).numpy()


def picture(axes: list[np.ndarray], names: tuple[str, ...], panels: dict[str, np.ndarray],
            title: str, slices: int = 0) -> bytes:
    """One PNG: a panel per field, images for a 2-D grid (and `slices` curves along the first
    coordinate at evenly spaced values of the second), curves for a 1-D one."""
    from matplotlib.figure import Figure  # lazy: a run without pictures never loads it

    from dltrain.probes.plots import png

    sliced = len(axes) == 2 and slices > 0
    width = 4.2 * (len(panels) + sliced)
    fig = Figure(figsize=(width, 3.4), dpi=80)
    # margins by hand: a tight layout took 1-3 s a picture (its colour bars), drawn in training
    fig.subplots_adjust(left=0.6 / width, right=1 - 0.2 / width, bottom=0.15, top=0.8,
                        wspace=0.45)
    ax = fig.subplots(1, len(panels) + sliced, squeeze=False)
    if sliced:
        shape = (len(axes[0]), len(axes[1]))
        ref, pred = panels["reference"].reshape(shape), panels["prediction"].reshape(shape)
        a = ax[0][-1]
        for j in np.linspace(0, shape[1] - 1, slices).round().astype(int):
            line, = a.plot(axes[0], pred[:, j], lw=1.2, label=f"{names[1]}={axes[1][j]:.2g}")
            a.plot(axes[0], ref[:, j], "--", color=line.get_color(), lw=1.0)
        a.set_xlabel(names[0])
        a.set_title("slices (reference dashed)")
        a.legend(fontsize=7)
    for a, (label, values) in zip(ax[0], panels.items(), strict=False):
        if len(axes) == 1:
            a.plot(axes[0], values, lw=1.2)
            a.set_xlabel(names[0])
            if label.startswith("|"):
                a.set_yscale("log")
        else:
            # rows of the grid run along the first coordinate: show it horizontally
            grid = values.reshape(len(axes[0]), len(axes[1])).T
            im = a.imshow(grid, origin="lower", aspect="auto", cmap="viridis" if not
                          label.startswith("|") else "magma",
                          extent=(axes[0][0], axes[0][-1], axes[1][0], axes[1][-1]))
            fig.colorbar(im, ax=a)
            a.set_xlabel(names[0])
            a.set_ylabel(names[1])
        a.set_title(label)
    fig.suptitle(title)
    return png(fig)


class PinnField(NoHooks):
    def __init__(self, ctx: ProbeContext, *, samples: int, every: int | None) -> None:
        assert isinstance(ctx.loss, PinnLoss)
        self.ctx, self.every, self.slices, self.loss = ctx, every, samples, ctx.loss
        problem = ctx.loss.problem
        box = problem.equation.box
        self.names = box.names
        self.axes = [np.linspace(lo, hi, n) for lo, hi, n in
                     zip(box.low, box.high, problem.grid, strict=True)]
        self.x = ctx.data.val.x
        self.reference = ctx.data.val.y.reshape(-1).double().cpu().numpy()
        self.drawn: tuple[int, bytes] | None = None

    def panels(self) -> dict[str, np.ndarray]:
        pred, residual = fields(self.ctx.model, self.loss, self.x)
        return {"reference": self.reference, "prediction": pred,
                "|error|": np.abs(pred - self.reference), "|residual|": residual}

    def draw(self, state: TrainState, panels: dict[str, np.ndarray] | None = None) -> bytes:
        panels = panels or self.panels()
        err = np.linalg.norm(panels["prediction"] - self.reference) / max(
            np.linalg.norm(self.reference), 1e-300)
        png = picture(self.axes, self.names, panels,
                      f"{self.loss.problem.equation.name} · step {state.step} · rel_l2 {err:.2e}",
                      self.slices)
        self.ctx.logger.log_image(TAG, png, state.step)
        self.drawn = (state.step, png)
        return png

    def start(self, state: TrainState) -> None:
        self.draw(state)

    def step(self, state: TrainState) -> None:
        if self.ctx.due(state.step, self.every):
            self.draw(state)

    def end(self, state: TrainState) -> None:
        panels = self.panels()
        png = self.draw(state, panels)
        atomic_write(self.ctx.run_dir / "field.png", lambda f: f.write(png))
        arrays = {n: a for n, a in zip(self.names, self.axes, strict=True)}
        arrays.update({"reference": self.reference, "prediction": panels["prediction"],
                       "error": panels["prediction"] - self.reference,
                       "residual": panels["|residual|"],
                       "shape": np.array([len(a) for a in self.axes])})
        atomic_write(self.ctx.run_dir / "field.npz", lambda f: np.savez(f, **arrays))
