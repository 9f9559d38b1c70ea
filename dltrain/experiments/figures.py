"""Drawing an experiment's figures: matplotlib without pyplot (no global state), PNG bytes."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from dltrain.experiments.readers import Run
from dltrain.experiments.section import run_label


def new_figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.4, 4.4),
               layout: str = "tight") -> Any:
    """(figure, axes[rows][cols]), each panel of `size` inches. `layout="constrained"` makes
    room for a legend outside the axes (`legend_below`)."""
    from matplotlib.figure import Figure  # lazy: only a report with figures draws

    fig = Figure(figsize=(size[0] * cols, size[1] * rows), dpi=100, layout=layout)
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


DASHES = ("-", "--", ":", "-.")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")


def line_styles(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Line styles by configuration: a colour and a marker per value of the last swept key, a
    dash pattern per value of the others, so that the eye can read both; markers are hollow,
    so that where two curves coincide both shapes still show."""
    colour_key, others = (keys[-1], keys[:-1]) if keys else (None, [])
    colours: dict[str, int] = {}
    dashes: dict[str, str] = {}
    styles = {}
    for run in runs:
        c = str(run.value(colour_key)) if colour_key else ""
        d = run_label(run, others)
        colours.setdefault(c, len(colours))
        dashes.setdefault(d, DASHES[len(dashes) % len(DASHES)])
        i = colours[c]
        styles[run_label(run, keys)] = {"color": f"C{i % 10}", "linestyle": dashes[d],
                                        "marker": MARKERS[i % len(MARKERS)],
                                        "markerfacecolor": "none"}
    return styles


def offsets(styles: dict[str, dict[str, Any]], spread: float = 0.4) -> dict[str, float]:
    """A shift along a discrete x axis (layers) per colour of `line_styles`, within `spread`,
    so that curves of equal values in different colours (Xavier and LeCun on square layers)
    sit side by side instead of one hiding the other."""
    colours = list(dict.fromkeys(style.get("color") for style in styles.values()))
    step = spread / max(len(colours) - 1, 1)
    return {label: (colours.index(style.get("color")) - (len(colours) - 1) / 2) * step
            for label, style in styles.items()}


def legend_below(fig: Any, styles: dict[str, dict[str, Any]], columns: int = 4) -> Any:
    """One legend for the figure, under its panels (never on the data), whose entries are
    drawn with each configuration's own colour, dash pattern and marker and long enough for
    a dash pattern to show (the default handle, with a marker in its middle, looks solid).
    The figure needs layout="constrained"."""
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], linewidth=1.5, markersize=6, **style)
               for style in styles.values()]
    return fig.legend(handles, list(styles), loc="outside lower center", fontsize="small",
                      ncols=min(columns, max(len(handles), 1)), handlelength=4.5,
                      frameon=False)
