"""The probes' pictures as PNG bytes (matplotlib, imported here only: a run without drawing
probes never loads it). Figures are made without pyplot: no global state, safe in any thread."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import numpy as np

_SIZE = (6.4, 4.8)
_DPI = 80  # small images: many of them go into an event file


def _figure(size: tuple[float, float] = _SIZE, tight: bool = False) -> Any:
    """A figure; margins fixed by hand unless `tight` (a tight layout triples the time a
    picture takes, which counts for pictures drawn during training)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=_DPI, layout="tight" if tight else None)
    if not tight:
        fig.subplots_adjust(left=0.13, right=0.97, bottom=0.11, top=0.92)
    return fig


def png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", pil_kwargs={"compress_level": 1})  # zlib's fastest
    return out.getvalue()


def boundary_figure(xs: np.ndarray, ys: np.ndarray, regions: np.ndarray, points: np.ndarray,
                    labels: np.ndarray, classes: int, title: str,
                    names: Sequence[str] = ()) -> Any:
    """Filled decision regions (one colour per class) with the training points on top, and a
    legend of the classes (their names where the data have them) beside the picture."""
    from matplotlib.colors import BoundaryNorm, ListedColormap
    from matplotlib.lines import Line2D

    colours = [f"C{i % 10}" for i in range(classes)]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(-0.5, classes + 0.5), classes)
    fig = _figure((_SIZE[0] + 1.4, _SIZE[1]))  # the legend's column to the right
    fig.subplots_adjust(left=0.11, right=0.78, bottom=0.11, top=0.92)
    ax = fig.subplots()
    ax.contourf(xs, ys, regions, levels=np.arange(-0.5, classes + 0.5), cmap=cmap, norm=norm,
                alpha=0.25)
    ax.scatter(points[:, 0], points[:, 1], c=labels, cmap=cmap, norm=norm, s=8,
               edgecolors="k", linewidths=0.2)
    ax.set_xlim(xs[0], xs[-1])
    ax.set_ylim(ys[0], ys[-1])
    ax.set_xlabel("x1")
    ax.set_ylabel("x2")
    ax.set_title(title)
    handles = [Line2D([], [], linestyle="none", marker="s", markersize=10, color=colour,
                      alpha=0.45, markeredgecolor="k", markeredgewidth=0.3)
               for colour in colours]
    labels_ = [str(names[i]) if i < len(names) else f"class {i}" for i in range(classes)]
    ax.legend(handles, labels_, title="class (region and points)", fontsize="small",
              title_fontsize="small", loc="upper left", bbox_to_anchor=(1.02, 1.0),
              borderaxespad=0.0, frameon=False)
    return fig


def boundary_png(xs: np.ndarray, ys: np.ndarray, regions: np.ndarray, points: np.ndarray,
                 labels: np.ndarray, classes: int, title: str, names: Sequence[str] = ()
                 ) -> bytes:
    """`boundary_figure` as a PNG."""
    return png(boundary_figure(xs, ys, regions, points, labels, classes, title, names))


def fit_png(x: np.ndarray, truth: np.ndarray | None, pred: np.ndarray, train_x: np.ndarray,
            train_y: np.ndarray, title: str) -> bytes:
    """The true function, the noisy training points and the model's prediction."""
    fig = _figure()
    ax = fig.subplots()
    ax.scatter(train_x, train_y, s=8, color="0.5", alpha=0.6, label="training points")
    if truth is not None:
        ax.plot(x, truth, color="k", linestyle="--", label="truth")
    ax.plot(x, pred, color="C3", label="prediction")
    lo, hi = np.nanmin(train_y), np.nanmax(train_y)
    pad = 0.25 * (hi - lo + 1e-9)
    ax.set_ylim(lo - pad, hi + pad)  # a wild prediction does not squash the picture
    ax.set_xlabel("x")
    ax.set_ylabel("y")
    ax.set_title(title)
    ax.legend(fontsize="small", loc="best")
    return png(fig)


def landscape_png(result: dict[str, np.ndarray], title: str) -> bytes:
    """Left: the loss from the initial (0) to the final (1) weights. Right: contours of the
    loss around the final weights along two filter-normalised random directions."""
    fig = _figure((11.0, 4.4), tight=True)  # drawn once, at the end
    left, right = fig.subplots(1, 2)
    alphas, line = result["alphas"], result["line"]
    if np.isfinite(line).any():
        left.plot(alphas, line, marker=".", color="C0")
        for a, name in ((0.0, "initial"), (1.0, "final")):
            left.axvline(a, color="0.6", linestyle=":")
            left.annotate(name, (a, 1.0), xycoords=("data", "axes fraction"), ha="center",
                          va="bottom", fontsize="small")
        if np.nanmin(line) > 0 and np.nanmax(line) / np.nanmin(line) > 100:
            left.set_yscale("log")
    else:
        left.text(0.5, 0.5, "no initial weights saved", ha="center", transform=left.transAxes)
    left.set_xlabel("alpha: (1 - alpha) initial + alpha final")
    left.set_ylabel("training loss")
    axis, surface = result["axis"], result["surface"]
    ok = np.isfinite(surface)
    finite = np.where(ok, surface, surface[ok].max() if ok.any() else 0.0)
    levels = np.unique(np.quantile(finite, np.linspace(0, 1, 21)))
    if len(levels) > 1:
        filled = right.contourf(axis, axis, finite, levels=levels, cmap="viridis")
        right.contour(axis, axis, finite, levels=levels, colors="k", linewidths=0.3)
        fig.colorbar(filled, ax=right, label="training loss")
    right.plot([0], [0], marker="*", color="w", markeredgecolor="k", markersize=12)
    right.set_xlabel("direction 1 (filter-normalised)")
    right.set_ylabel("direction 2")
    right.set_aspect("equal")
    fig.suptitle(title)
    return png(fig)
