"""Drawing an experiment's figures: matplotlib without pyplot (no global state), PNG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from dltrain.experiments.readers import Run
from dltrain.experiments.section import run_label


def new_figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.4, 4.4)) -> Any:
    """(figure, axes[rows][cols]), each panel of `size` inches."""
    from matplotlib.figure import Figure  # lazy: only a report with figures draws

    fig = Figure(figsize=(size[0] * cols, size[1] * rows), dpi=100, layout="tight")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def to_png(fig: Any) -> bytes:
    """The figure as a PNG."""
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def positive_points(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points a log-scaled y axis can show."""
    return [(x, y) for x, y in points if y > 0 and math.isfinite(y)]


def log_scale_ok(values: Sequence[float]) -> bool:
    """Whether the values are positive and spread enough to want a log scale."""
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 20


def line_styles(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, dict[str, str]]:
    """Line styles by configuration: a colour per value of the last swept key, a dash pattern
    per value of the others, so that the eye can read both."""
    colour_key, others = (keys[-1], keys[:-1]) if keys else (None, [])
    colours: dict[str, str] = {}
    dashes: dict[str, str] = {}
    styles = {}
    for run in runs:
        c = str(run.value(colour_key)) if colour_key else ""
        d = run_label(run, others)
        colours.setdefault(c, f"C{len(colours) % 10}")
        dashes.setdefault(d, ("-", "--", ":", "-.")[len(dashes) % 4])
        styles[run_label(run, keys)] = {"color": colours[c], "linestyle": dashes[d]}
    return styles
