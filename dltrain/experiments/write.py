"""Into the report: which experiment a sweep ran, its section as markdown, its figures in
plots/ and its numbers in experiment.csv."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from dltrain.experiments.capacity import bias_variance, double_descent, overfitting
from dltrain.experiments.init_study import init_study
from dltrain.experiments.optimizers import optimizers
from dltrain.experiments.readers import Run
from dltrain.experiments.resnet_vs_plain import resnet_vs_plain
from dltrain.experiments.rnn_memory import rnn_memory
from dltrain.experiments.section import Section
from dltrain.hparams import SEED_KEYS
from dltrain.io import atomic_write
from dltrain.report import Job, Report

EXPERIMENTS: dict[str, Callable[[Sequence[Run], Sequence[str]], Section]] = {
    "init_study": init_study,
    "overfitting": overfitting,
    "double_descent": double_descent,
    "bias_variance": bias_variance,
    "optimizers": optimizers,
    "resnet_vs_plain": resnet_vs_plain,
    "rnn_memory": rnn_memory,
}


def experiment_of(jobs: Sequence[Job]) -> str | None:
    """The experiment every job of the sweep ran (`experiment=NAME`), or None."""
    names = {job.overrides.get("experiment") for job in jobs}
    return names.pop() if len(names) == 1 else None


def experiment_section(report: Report) -> Section | None:
    """The section of the experiment the sweep ran, from its completed runs (None if the
    sweep is not one of the experiments)."""
    name = experiment_of(report.jobs)
    if name not in EXPERIMENTS:
        return None
    directory = report.sweep_dir
    runs = [Run(job, directory if len(report.jobs) == 1 and not (directory / job.name).is_dir()
                else directory / job.name) for job in report.jobs if job.status == "completed"]
    keys = [k for k in report.keys if k not in SEED_KEYS]
    return EXPERIMENTS[name](runs, keys)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_section(report: Report, images: dict[str, bytes]) -> str:
    """Write the experiment's figures (plots/<experiment>_<figure>.png) and experiment.csv;
    return its markdown for report.md (empty if the sweep is no experiment). The figures are
    added to `images` for the sweep's TensorBoard run."""
    section = experiment_section(report)
    if section is None:
        return ""
    plots = report.sweep_dir / "plots"
    plots.mkdir(exist_ok=True)
    lines = ["", f"## Experiment: {section.name}", "", section.point, ""]
    lines += [f"- {_escape(finding)}" for finding in section.findings]
    for figure, png in section.figures.items():
        path = plots / f"{section.name}_{figure}.png"
        atomic_write(path, lambda f, png=png: f.write(png))
        images[f"report/{section.name}/{figure}"] = png
        lines += ["", f"![{section.name}: {figure}](plots/{path.name})"]
    if section.rows:
        text = _csv(section.rows).encode("utf-8")
        atomic_write(report.sweep_dir / "experiment.csv", lambda f: f.write(text))
        lines += ["", "The numbers behind the figures: experiment.csv."]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return re.sub(r"([|*_])", r"\\\1", text)
