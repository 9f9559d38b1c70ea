"""probe=[field]: what an operator makes of a few fixed test samples (and, through
`field_probe`, a physics-informed network's solution: dltrain.pinn.field).

For operator data (a field in, a field of the same size out: data=darcy, burgers_operator, an
arrays file of fields) one row per sample: the input, the truth, the prediction and the error,
in the data's own units (the first channel of each). Images for 2-D fields, curves for 1-D.
Drawn at step 0, every `every` steps (TensorBoard image `probe/field`) and at the end, where it
is also written to RUN_DIR/field.png.

The samples are the first `samples` of the test split: the same in every run of the data. The
drawing of operator data is `operator_picture`; another kind of field (a physics-informed
network's solution on its grid) is another function of the same shape: `Field` picks one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from dltrain.data.spec import Data, DataSpec
from dltrain.io import atomic_write
from dltrain.probes.context import ProbeContext, looking
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState

FIELD = "probe/field"  # TensorBoard image
FIELD_FILE = "field.png"


def refusal(spec: DataSpec) -> str | None:
    """Why this probe cannot look at `spec`'s data, or None."""
    if spec.task == "pinn":  # the solution over its domain: dltrain.pinn.field
        return None
    spatial = tuple(spec.input_shape[1:])
    target = tuple(spec.target_shape)
    if spec.task == "regression" and spec.kind in ("signal", "image") and target and (
            target[1:] == spatial or target == spatial):
        return None
    return (f"probe=[field] draws fields (a field in, a field of the same size out); "
            f"data={spec.name} is not such data (use data=darcy, data=burgers_operator or "
            "data=arrays with (N, C, H, W) inputs and targets)")


@dataclass
class FieldRows:
    """The first channel of a few samples, in the data's units: (n, *sizes) arrays."""

    inputs: np.ndarray
    truth: np.ndarray
    prediction: np.ndarray

    @property
    def error(self) -> np.ndarray:
        return self.prediction - self.truth


def operator_rows(model: torch.nn.Module, data: Data, n: int) -> FieldRows:
    """The model on the first `n` test samples, with their inputs and truth, in data units."""
    x, y = data.test.x[:n], data.test.y[:n]
    with looking(model):
        out = model(x).float()
    if data.target_scale is not None:
        out, y = data.target_scale.restore(out), data.target_scale.restore(y.float())
    mean, std = data.norm.get("mean", [0.0]), data.norm.get("std", [1.0])

    def first(t: torch.Tensor, channel_axis: bool) -> np.ndarray:
        return (t[:, 0] if channel_axis else t).detach().cpu().double().numpy()

    channel_axis = y.ndim == x.ndim  # a target without a channel axis is one channel
    inputs = first(x, True) * std[0] + mean[0]
    return FieldRows(inputs, first(y, channel_axis), first(out, channel_axis))


def operator_picture(rows: FieldRows, title: str) -> bytes:
    """One row a sample: input | truth | prediction | error (2-D: images with colour bars),
    or input | truth and prediction | error (1-D: curves)."""
    from matplotlib.figure import Figure

    from dltrain.probes.plots import png

    n, two_d = len(rows.inputs), rows.inputs.ndim == 3
    cols = 4 if two_d else 3
    fig = Figure(figsize=(3.0 * cols, 2.4 * n + 0.4), dpi=80, layout="constrained")
    axes = fig.subplots(n, cols, squeeze=False)
    for i in range(n):
        if two_d:
            panels = [("input", rows.inputs[i], "viridis"), ("truth", rows.truth[i], "magma"),
                      ("prediction", rows.prediction[i], "magma"),
                      ("error", rows.error[i], "coolwarm")]
            low, high = rows.truth[i].min(), rows.truth[i].max()
            for ax, (name, values, cmap) in zip(axes[i], panels, strict=True):
                limits = {}
                if name in ("truth", "prediction"):  # one colour scale: the truth's
                    limits = {"vmin": low, "vmax": high}
                elif name == "error":
                    top = float(np.abs(values).max()) or 1.0
                    limits = {"vmin": -top, "vmax": top}
                image = ax.imshow(values, cmap=cmap, origin="lower", **limits)
                fig.colorbar(image, ax=ax, shrink=0.8)
                ax.set_xticks([])
                ax.set_yticks([])
                if i == 0:
                    ax.set_title(name)
        else:
            x = (np.arange(rows.inputs.shape[1]) + 0.5) / rows.inputs.shape[1]
            axes[i, 0].plot(x, rows.inputs[i], color="tab:blue")
            axes[i, 1].plot(x, rows.truth[i], color="black", label="truth")
            axes[i, 1].plot(x, rows.prediction[i], color="tab:red", linestyle="--",
                            label="prediction")
            axes[i, 2].plot(x, rows.error[i], color="tab:purple")
            axes[i, 2].axhline(0.0, color="grey", linewidth=0.5)
            if i == 0:
                for ax, name in zip(axes[0], ("input", "truth, prediction", "error"),
                                    strict=True):
                    ax.set_title(name)
                axes[0, 1].legend(fontsize="small")
        rel = np.linalg.norm(rows.error[i]) / max(np.linalg.norm(rows.truth[i]), 1e-30)
        axes[i, 0].set_ylabel(f"sample {i}\nrel_l2 {rel:.3g}")
    fig.suptitle(title)
    return png(fig)


class Field(NoHooks):
    """The picture at step 0, every `every` steps and at the end (field.png)."""

    def __init__(self, ctx: ProbeContext, *, samples: int, every: int | None) -> None:
        self.ctx, self.every = ctx, every
        self.n = min(samples, len(ctx.data.test))
        # what to draw, by the kind of field; the operator data's rows and picture here
        self.rows: Callable[[], FieldRows] = lambda: operator_rows(ctx.model, ctx.data, self.n)
        self.picture: Callable[[FieldRows, str], bytes] = operator_picture
        self.drawn: tuple[int, bytes] | None = None

    def draw(self, state: TrainState) -> bytes:
        png = self.picture(self.rows(), f"{self.ctx.spec.name} · step {state.step}")
        self.ctx.logger.log_image(FIELD, png, state.step)
        self.drawn = (state.step, png)
        return png

    def start(self, state: TrainState) -> None:
        self.draw(state)

    def step(self, state: TrainState) -> None:
        if self.ctx.due(state.step, self.every):
            self.draw(state)

    def end(self, state: TrainState) -> None:
        png = self.drawn[1] if self.drawn and self.drawn[0] == state.step else self.draw(state)
        atomic_write(self.ctx.run_dir / FIELD_FILE, lambda f: f.write(png))


def field_probe(ctx: ProbeContext, *, samples: int, every: int | None) -> NoHooks:
    """probe=[field]: a physics-informed network's solution over its domain (dltrain.pinn.field,
    `samples` slices of it), or an operator's few test samples."""
    if ctx.spec.task == "pinn":
        from dltrain.pinn.field import PinnField

        return PinnField(ctx, samples=samples, every=every)
    return Field(ctx, samples=samples, every=every)
