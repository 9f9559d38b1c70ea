"""The report's plots: the objective against each swept key (PNG, matplotlib without pyplot)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dltrain.io import atomic_write, safe_name
from dltrain.report.aggregate import Report, Row
from dltrain.report.render import cell


def _order(value: Any) -> tuple[int, float, str]:
    """Sorts numbers by value before anything else by its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 0, float(value), ""
    return 1, 0.0, str(value)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def objective_figure(report: Report, key: str) -> Any:
    """The mean objective (± std over seeds) against `key`, one series per combination of the
    other swept keys when that gives series of several points, else one series.

    A numeric key is an ordered axis: its points are joined by lines. Any other (an optimiser,
    an activation, an initialisation) is a set of unordered categories: a line between them
    would suggest an order and a trend that are not there, so each category gets points only,
    the series side by side within it."""
    from matplotlib.figure import Figure  # lazy: matplotlib is heavy; no pyplot, no global state

    others = [k for k in report.keys if k != key]
    rows = sorted((r for r in report.rows if r.objective is not None),
                  key=lambda r: [_order(r.params[k]) for k in others])
    series: dict[str, list[Row]] = {}
    for row in rows:
        label = ", ".join(f"{k}={cell(row.params[k])}" for k in others)
        series.setdefault(label, []).append(row)
    as_series = 1 <= len(series) <= 10 and all(len(s) > 1 for s in series.values())
    groups = list(series.items()) if as_series else [("", rows)]
    xs_all = [r.params[key] for r in rows]
    numeric = _numeric(xs_all)
    positions = {v: i for i, v in enumerate(dict.fromkeys(sorted(map(str, xs_all))))}
    width = 0.6  # of a category's slot that its series' points share

    fig = Figure(figsize=(6.4, 4.2), dpi=100, layout="tight")
    ax = fig.subplots()
    for i, (label, members) in enumerate(groups):
        members = sorted(members, key=lambda r: r.params[key] if numeric else str(r.params[key]))
        if numeric:
            x = [r.params[key] for r in members]
        else:  # side by side within the category, so that equal values do not hide each other
            shift = (i - (len(groups) - 1) / 2) * width / max(len(groups), 1)
            x = [positions[str(r.params[key])] + shift for r in members]
        y = [r.objective.mean for r in members]
        err = [r.objective.std or 0.0 for r in members]
        ax.errorbar(x, y, yerr=err if any(err) else None, marker="o", capsize=3,
                    linestyle="-" if numeric and as_series else "none", label=label or None)
    if numeric and xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 20:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(list(positions.values()), list(positions))
        ax.set_xlim(-0.5, len(positions) - 0.5)
    ax.set_xlabel(key)
    ax.set_ylabel(f"{report.metric or 'objective'}" + (" (mean ± std)" if report.seeds else ""))
    ax.set_title(f"{report.metric or 'objective'} vs {key}")
    ax.grid(alpha=0.3, axis="y" if not numeric else "both")
    if as_series and others:
        ax.legend(fontsize="small")
    return fig


def plot_objective(report: Report, key: str) -> bytes:
    """PNG of `objective_figure`."""
    out = io.BytesIO()
    objective_figure(report, key).savefig(out, format="png")
    return out.getvalue()


def write_plots(report: Report
                ) -> tuple[list[tuple[str, str]], dict[str, bytes], list[str]]:
    """plots/objective_vs_<key>.png for each swept key: ((key, path), ...), the PNGs by
    TensorBoard tag, and what could not be drawn."""
    plots: list[tuple[str, str]] = []
    images: dict[str, bytes] = {}
    problems: list[str] = []
    if not any(r.objective is not None for r in report.rows):
        return plots, images, problems
    for key in report.keys:
        try:
            png = plot_objective(report, key)
        except Exception as err:  # a plot is a view of the report, never a reason to lose it
            problems.append(f"no plot of {key}: {type(err).__name__}: {err}")
            continue
        path = Path("plots") / f"objective_vs_{safe_name(key)}.png"
        atomic_write(report.sweep_dir / path, lambda f, png=png: f.write(png))
        plots.append((key, path.as_posix()))
        images[f"report/objective_vs_{key}"] = png
    return plots, images, problems

