"""The report's plots: the objective against each swept key (PNG, matplotlib without pyplot)."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dltrain.io import safe_name
from dltrain.report.aggregate import Report, Row
from dltrain.report.render import cell


def _order(value: Any) -> tuple[int, float, str]:
    """Sorts numbers by value before anything else by its text."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return 0, float(value), ""
    return 1, 0.0, str(value)


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def plot_objective(report: Report, key: str) -> bytes:
    """PNG of the mean objective (± std over seeds) against `key`: one line per combination of
    the other swept keys when that gives lines, else one point per configuration."""
    from matplotlib.figure import Figure  # lazy: matplotlib is heavy; no pyplot, no global state

    others = [k for k in report.keys if k != key]
    rows = sorted((r for r in report.rows if r.objective is not None),
                  key=lambda r: [_order(r.params[k]) for k in others])
    series: dict[str, list[Row]] = {}
    for row in rows:
        label = ", ".join(f"{k}={cell(row.params[k])}" for k in others)
        series.setdefault(label, []).append(row)
    as_lines = 1 <= len(series) <= 10 and all(len(s) > 1 for s in series.values())
    xs_all = [r.params[key] for r in rows]
    numeric = _numeric(xs_all)
    positions = {v: i for i, v in enumerate(dict.fromkeys(sorted(map(str, xs_all))))}

    fig = Figure(figsize=(6.4, 4.2), dpi=100, layout="tight")
    ax = fig.subplots()
    for label, members in (series.items() if as_lines else [("", rows)]):
        members = sorted(members, key=lambda r: r.params[key] if numeric else str(r.params[key]))
        x = [r.params[key] if numeric else positions[str(r.params[key])] for r in members]
        y = [r.objective.mean for r in members]
        err = [r.objective.std or 0.0 for r in members]
        ax.errorbar(x, y, yerr=err if any(err) else None, marker="o", capsize=3,
                    linestyle="-" if as_lines else "none", label=label or None)
    if numeric and xs_all and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 20:
        ax.set_xscale("log")
    if not numeric:
        ax.set_xticks(list(positions.values()), list(positions))
    ax.set_xlabel(key)
    ax.set_ylabel(f"{report.metric or 'objective'}" + (" (mean ± std)" if report.seeds else ""))
    ax.set_title(f"{report.metric or 'objective'} vs {key}")
    ax.grid(alpha=0.3)
    if as_lines and others:
        ax.legend(fontsize="small")
    out = io.BytesIO()
    fig.savefig(out, format="png")
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
        (report.sweep_dir / "plots").mkdir(exist_ok=True)
        (report.sweep_dir / path).write_bytes(png)
        plots.append((key, path.as_posix()))
        images[f"report/objective_vs_{key}"] = png
    return plots, images, problems

