"""What a report looks like: the terminal table, report.csv, runs.csv, best.yaml's content and
report.md, all from an aggregated `Report` (plain text and rich tables; nothing is written
here)."""

from __future__ import annotations

import csv
import io
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from dltrain.log.console import fmt
from dltrain.report.aggregate import Report, Row
from dltrain.report.jobs import NOT_STARTED, Job

SEARCH_KEYS = ("hparams_search",)  # start a search: not part of the command that reruns a result
_LIST_CELLS = 10  # names of runs listed in one cell of report.csv


def cell(value: Any) -> str:
    """A value in a table or a sentence: nothing for None, a float as the console writes it."""
    if value is None:
        return ""
    if isinstance(value, float):
        return fmt(value)
    return str(value)


def objective_label(report: Report) -> str:
    arrow = {"max": " ↑", "min": " ↓"}.get(report.mode or "", "")
    return f"{report.metric or 'objective'}{arrow}"


def _columns(report: Report) -> list[str]:
    return [*(["name"] if report.named else []), *report.keys, objective_label(report),
            *report.metric_columns, "n", "status", "wall s",
            *(["startup s"] if report.startup else [])]


def _left(report: Report) -> int:
    """How many of the first columns name a configuration (left-aligned)."""
    return len(report.keys) + report.named


def _cells(report: Report, row: Row) -> list[str]:
    return [
        *([row.names] if report.named else []),
        *(cell(row.params[k]) for k in report.keys),
        "" if row.objective is None else str(row.objective),
        *("" if row.metrics.get(m) is None else str(row.metrics[m])
          for m in report.metric_columns),
        str(row.completed),
        row.status,
        "" if row.wall_s is None else fmt(row.wall_s.mean),
        *([_startup(row)] if report.startup else []),
    ]


def _startup(row: Row) -> str:
    """A row's start-up time: blank where its runs paid none (they ran in a process that
    had started already), so that the one run that did stands out."""
    stat = row.startup_s
    return "" if stat is None or stat.mean <= 0 else fmt(stat.mean)


def _headline(report: Report) -> str:
    runs, configs = len(report.jobs), len(report.rows)
    waiting = sum(not j.started for j in report.jobs)
    text = (f"{runs} run{'s' * (runs != 1)}{f' ({waiting} not started)' if waiting else ''}, "
            f"{configs} configuration{'s' * (configs != 1)}")
    if report.metric:
        better = {"max": "higher is better", "min": "lower is better"}.get(
            report.mode or "", "runs disagree on the objective: not ranked")
        text += f"; objective {report.metric} ({better})"
    if report.seeds:
        text += f"; mean ± std over {', '.join(report.seeds)}, n runs completed"
    if report.startup:
        text += ("; wall s is each run's own time, startup s what the first run of a process "
                 "paid before it (imports)")
    return text


def rich_table(report: Report) -> Table:
    """The table for the terminal: one row per configuration, the best first and in bold."""
    table = Table(title=f"sweep {report.sweep_dir}", caption=_headline(report),
                  header_style="bold")
    for i, name in enumerate(_columns(report)):
        table.add_column(name, justify="left" if i < _left(report) or name == "status"
                         else "right")
    for row in report.rows:
        style = "bold green" if row is report.best else ("red" if row.completed < len(row.jobs)
                                                         else None)
        table.add_row(*_cells(report, row), style=style)
    return table


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def _progress(job: Job) -> str:
    """How far a run went, from its summary: 'at step 12 (epoch 1)'."""
    steps, epochs = job.summary.get("steps"), job.summary.get("epochs")
    if steps is None:
        return "before its first step"
    return f"at step {steps}" + (f" (epoch {epochs})" if epochs is not None else "")


def _why(report: Report, job: Job) -> str:
    """What became of a run that did not complete, in a few words."""
    error = _first_line(job.summary.get("error"))
    if not job.started:
        swept = [f"{k}={job.overrides[k]}" for k in (*report.keys, *report.seeds)
                 if k in job.overrides]
        return f"the sweep stopped before it ({' '.join(swept) or 'its own overrides'})"
    if not job.summary:
        return "no summary.json: the run did not finish"
    if job.status == "interrupted":
        return (f"stopped {_progress(job)}; continue it with dltrain resume "
                f"{report.sweep_dir / job.name}")
    return error or f"ended {_progress(job)}"


def failure_lines(report: Report) -> list[str]:
    """One line per run that did not complete: its directory (#N for a job of the sweep that
    never started), how it ended and why (an interrupted run: how far it went)."""
    return [f"{job.name}: {job.status}: {_why(report, job)}" for job in report.failures]


def to_csv(report: Report) -> str:
    """report.csv: one row per configuration, best first, raw numbers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    stats = ["objective", *report.metric_columns, "wall_s"]
    writer.writerow(["rank", *(["name"] if report.named else []), *report.keys,
                     *(f"{s}_{p}" for s in stats for p in ("mean", "std")),
                     "n", "runs", "status", "metric", "mode", "dirs"])
    for rank, row in enumerate(report.rows, 1):
        values = [row.objective, *(row.metrics.get(m) for m in report.metric_columns), row.wall_s]
        numbers = []
        for stat in values:
            numbers += ["", ""] if stat is None else [stat.mean, "" if stat.std is None
                                                      else stat.std]
        dirs = [j.name for j in row.jobs]
        writer.writerow([rank, *([row.names] if report.named else []),
                         *(row.params[k] for k in report.keys), *numbers, row.completed,
                         len(row.jobs), row.status, report.metric or "", report.mode or "",
                         ";".join(dirs[:_LIST_CELLS]) + (";..." if len(dirs) > _LIST_CELLS
                                                        else "")])
    return out.getvalue()


def runs_csv(report: Report) -> str:
    """runs.csv: one row per run, for analyses of your own."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = [*report.keys, *report.seeds]
    writer.writerow(["dir", "name", *keys, "status", "objective", *report.metric_columns,
                     "wall_s", "startup_s", "error"])
    for job in report.jobs:
        test = job.summary.get("test") or {}
        writer.writerow([job.name, job.run_name or "", *(job.value(k) for k in keys), job.status,
                         "" if job.objective is None else job.objective,
                         *(test.get(m[len("test/"):], "") for m in report.metric_columns),
                         job.summary.get("wall_s", ""), job.summary.get("startup_s", ""),
                         _first_line(job.summary.get("error"))])
    return out.getvalue()


def best_config(report: Report) -> dict[str, Any] | None:
    """best.yaml: the best configuration, its score, and the command that runs it again."""
    row = report.best
    if row is None:
        return None
    job = row.jobs[0]
    overrides = [f"{k}={job.overrides[k]}" for k in (*report.fixed, *report.keys)
                 if k in job.overrides and k not in SEARCH_KEYS]
    return {
        "metric": report.metric,
        "mode": report.mode,
        "mean": row.objective.mean,
        "std": row.objective.std,
        "n": row.objective.n,
        "params": dict(row.params),
        "overrides": overrides,
        "command": shlex.join(["dltrain", *report.launch, *overrides]),
        "runs": [j.name for j in row.jobs],
    }


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(report: Report, plots: Sequence[tuple[str, str]] = (),
                study: Mapping[str, Any] | None = None) -> str:
    """report.md: the table, the best configuration, the failures, the plots."""
    columns = _columns(report)
    lines = [f"# Sweep report: {report.sweep_dir.name}", "", _headline(report) + "."]
    if report.fixed:
        fixed = " ".join(f"{k}={v}" for k, v in report.fixed.items())
        lines += ["", f"Same in every run: `{fixed}`"]
    lines += ["", "| " + " | ".join(_md_escape(c) for c in columns) + " |",
              "|" + "|".join("---" if i < _left(report) or name == "status" else "--:"
                             for i, name in enumerate(columns)) + "|"]
    for row in report.rows:
        cells = [_md_escape(c) for c in _cells(report, row)]
        if row is report.best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    best = best_config(report)
    if best:
        spread = f" ± {fmt(best['std'])}" if best["std"] is not None else ""
        params = " ".join(f"{k}={cell(v)}" for k, v in best["params"].items())
        lines += ["", f"**Best:** {params} — {best['metric']} {fmt(best['mean'])}{spread} "
                      f"(n={best['n']}). Again: `{best['command']}`"]
    if study:
        lines += ["", "## Optuna study", "",
                  f"Best of the study (every trial in its storage): value "
                  f"{cell(study.get('best_value'))} with "
                  + ", ".join(f"`{k}={v}`" for k, v in (study.get("best_params") or {}).items())
                  + " (the value faces the sweeper's direction: a minimised metric is negated "
                    "under `direction: maximize`)."]
    failures = failure_lines(report)
    if failures:
        lines += ["", f"## Failures ({len(failures)} of {len(report.jobs)} runs)", ""]
        lines += [f"- {_md_escape(line)}" for line in failures]
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{report.metric or 'objective'} vs {key}]({path})" for key, path in plots]
    return "\n".join(lines) + "\n"


def print_report(report: Report, console: Console, notes: Sequence[str] = ()) -> None:
    """The table, the best configuration's command, the failures, where the report is."""
    table = rich_table(report)
    if not console.is_terminal:  # a log or a pipe: the whole table, not one cut to 80 columns
        wide = console.options.update(max_width=1000)
        needed = Measurement.get(console, wide, table).maximum
        if needed > console.width:
            console = Console(file=console.file, width=needed, no_color=console.no_color)
    console.print(table)
    best = best_config(report)
    if best is not None:
        console.print(f"best: {best['command']}", highlight=False, markup=False, soft_wrap=True)
    for job, line in zip(report.failures, failure_lines(report), strict=True):
        kind = "failed" if job.status not in ("interrupted", NOT_STARTED) else "stopped"
        console.print(f"{kind}: {line}", style="red" if kind == "failed" else "yellow",
                      highlight=False, markup=False, soft_wrap=True)
    for line in notes:
        console.print(f"report: {line}", style="yellow", highlight=False, markup=False)
    console.print(f"report: {report.sweep_dir / 'report.md'}", highlight=False, markup=False)

