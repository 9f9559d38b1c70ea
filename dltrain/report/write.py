"""Writing a sweep's report files into its directory: report.csv, runs.csv, report.md, best.yaml
and plots/. What else belongs to a sweep's report (a lecture's experiment section, the
TensorBoard run) its caller adds: see dltrain/sweep_report.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from dltrain.io import atomic_write
from dltrain.report.aggregate import Report, aggregate
from dltrain.report.jobs import read_sweep
from dltrain.report.plots import write_plots
from dltrain.report.render import best_config, runs_csv, to_csv, to_markdown


@dataclass
class Written:
    """What `write_report` wrote, for the caller that adds to it."""

    report: Report
    markdown: str  # report.md as written
    images: dict[str, bytes] = field(default_factory=dict)  # the plots, by TensorBoard tag
    problems: list[str] = field(default_factory=list)  # what could not be drawn, one line each


def write_text(path: Path, text: str) -> None:
    """A report file, replaced in one step (a reader never sees half of it)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def write_report(sweep_dir: Path) -> Written:
    """Read the sweep and write its report files; return the report and what was written."""
    sweep_dir = Path(sweep_dir)
    report = aggregate(sweep_dir, read_sweep(sweep_dir))
    plots, images, problems = write_plots(report)
    study = None
    if (sweep_dir / "optimization_results.yaml").is_file():  # written by Hydra's Optuna sweeper
        study = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text()) or None
    markdown = to_markdown(report, plots, study)
    write_text(sweep_dir / "report.csv", to_csv(report))
    write_text(sweep_dir / "runs.csv", runs_csv(report))
    write_text(sweep_dir / "report.md", markdown)
    best = best_config(report)
    if best is not None:
        write_text(sweep_dir / "best.yaml", yaml.safe_dump(best, sort_keys=False))
    else:  # not one left over from an earlier report of this sweep
        (sweep_dir / "best.yaml").unlink(missing_ok=True)
    return Written(report, markdown, images, problems)
