"""The report of a sweep: what each configuration scored, with seeds as error bars.

Plain functions over plain data. A sweep directory holds one directory per job, each with
`.hydra/overrides.yaml`, `.hydra/config.yaml` and `summary.json`; nothing else is read, so the
report needs neither torch nor Hydra. Jobs that differ only in a seed key (`trainer.seed`) are
one configuration: its objective and test metrics are given as mean ± sample standard deviation
over those runs, with their number n.

Written into the sweep directory: report.csv (one row per configuration), runs.csv (one row per
run), report.md, best.yaml (the best configuration and how to run it again), plots/ (the
objective against each swept key, PNG) and tb/ (the plots and the report as a TensorBoard run).
A sweep of one of the lectures' experiments (`experiment=NAME`) adds its own section, figures and
experiment.csv (dltrain/experiments.py).
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from dltrain.errors import ConfigError
from dltrain.log.console import fmt

SEED_KEYS = ("trainer.seed",)
SEARCH_KEYS = ("hparams_search",)  # start a search: not part of the command that reruns a result
EXIT_CODES = {"completed": 0, "interrupted": 130}  # any other end of a run: 1
_LIST_CELLS = 10  # names of runs listed in one cell of report.csv


# ---------------------------------------------------------------------------------------------
# Reading a sweep


def parse_value(text: str) -> Any:
    """An override's value as the number, boolean or null it spells, else the text itself."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "null": None}.get(text.lower(), text)


def _lookup(config: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


@dataclass(frozen=True)
class Job:
    """One run of a sweep, as its directory tells it."""

    name: str  # the directory's name
    overrides: dict[str, str]  # key -> value, as given on the command line or by the sweeper
    config: dict[str, Any] = field(default_factory=dict)  # .hydra/config.yaml
    summary: dict[str, Any] = field(default_factory=dict)  # summary.json; {} if never written

    @property
    def status(self) -> str:
        return str(self.summary.get("status", "unfinished"))

    @property
    def objective(self) -> float | None:
        value = self.summary.get("objective")
        ok = self.status == "completed" and isinstance(value, (int, float)) and math.isfinite(value)
        return float(value) if ok else None

    def value(self, key: str) -> Any:
        """The value of `key` in this run: the config's (typed, and there even when the key was
        not overridden), else the override's, else the option a config group chose."""
        found, value = _lookup(self.config, key)
        if found and not isinstance(value, Mapping):
            return value
        if key in self.overrides:
            return parse_value(self.overrides[key])
        if found and "name" in value:  # a config group left at its default: its option's name
            return value["name"]
        return None


def _key(override: str) -> tuple[str, str]:
    key, _, value = override.partition("=")
    return key.lstrip("+~"), value


def read_job(path: Path) -> Job:
    """The job in directory `path` (which has .hydra/overrides.yaml)."""
    hydra_dir = path / ".hydra"
    overrides = yaml.safe_load((hydra_dir / "overrides.yaml").read_text(encoding="utf-8")) or []
    config = {}
    if (hydra_dir / "config.yaml").is_file():
        config = yaml.safe_load((hydra_dir / "config.yaml").read_text(encoding="utf-8")) or {}
    summary = {}
    if (path / "summary.json").is_file():
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    return Job(path.name, dict(_key(str(o)) for o in overrides), config, summary)


def _natural(name: str) -> tuple[int, str]:
    number = name.split("_", 1)[0]
    return (int(number), name) if number.isdigit() else (1 << 62, name)


def find_jobs(sweep_dir: Path) -> list[Path]:
    """The job directories of a sweep, in job-number order (or the directory itself if it is
    a single run)."""
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise ConfigError(f"{sweep_dir} is not a directory; give a sweep's directory, "
                          "e.g. outputs/sweeps/<date>_<time>_<tag>.")
    if (sweep_dir / ".hydra" / "overrides.yaml").is_file():
        return [sweep_dir]
    jobs = [p for p in sweep_dir.iterdir() if (p / ".hydra" / "overrides.yaml").is_file()]
    if not jobs:
        raise ConfigError(f"{sweep_dir} holds no runs (no */.hydra/overrides.yaml); give a "
                          "sweep's directory, e.g. outputs/sweeps/<date>_<time>_<tag>.")
    return sorted(jobs, key=lambda p: _natural(p.name))


def read_sweep(sweep_dir: Path) -> list[Job]:
    return [read_job(p) for p in find_jobs(sweep_dir)]


# ---------------------------------------------------------------------------------------------
# Aggregating


@dataclass(frozen=True)
class Stat:
    """Mean and sample standard deviation (None for a single value) of n values."""

    mean: float
    std: float | None
    n: int

    @classmethod
    def of(cls, values: Iterable[float]) -> Stat | None:
        values = [float(v) for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
        if not values:
            return None
        std = statistics.stdev(values) if len(values) > 1 else None
        return cls(statistics.fmean(values), std, len(values))

    def __str__(self) -> str:
        return fmt(self.mean) if self.std is None else f"{fmt(self.mean)} ± {fmt(self.std)}"


@dataclass(frozen=True)
class Row:
    """One configuration of the sweep: the runs that differ at most in their seed."""

    params: dict[str, Any]  # the swept keys' values, seeds excluded
    jobs: tuple[Job, ...]
    objective: Stat | None
    metrics: dict[str, Stat | None]  # test/<metric> -> statistic over completed runs
    wall_s: Stat | None

    @property
    def completed(self) -> int:
        return sum(j.status == "completed" for j in self.jobs)

    @property
    def status(self) -> str:
        counts: dict[str, int] = {}
        for job in self.jobs:
            counts[job.status] = counts.get(job.status, 0) + 1
        if list(counts) == ["completed"]:
            return "completed"
        return ", ".join(f"{n} {status}" for status, n in counts.items())


@dataclass(frozen=True)
class Report:
    sweep_dir: Path
    jobs: tuple[Job, ...]
    keys: tuple[str, ...]  # swept keys, seeds excluded: the columns that name a configuration
    seeds: tuple[str, ...]  # swept seed keys, over which rows average
    fixed: dict[str, str]  # overrides every job shares
    rows: tuple[Row, ...]  # best first when the objective has one direction, else sweep order
    metric: str | None  # the objective's metric, e.g. val/accuracy (None if no run says)
    mode: str | None  # max | min; None when runs disagree or none completed

    @property
    def failures(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "completed"]

    @property
    def best(self) -> Row | None:
        if self.mode is None or not self.rows or self.rows[0].objective is None:
            return None
        return self.rows[0]

    @property
    def metric_columns(self) -> list[str]:
        seen: dict[str, None] = {}
        for row in self.rows:
            seen.update(dict.fromkeys(row.metrics))
        return list(seen)


def _same(a: Any, b: Any) -> bool:
    return repr(a) == repr(b)


def swept_keys(jobs: Sequence[Job]) -> list[str]:
    """The override keys whose value is not the same in every job, in command-line order."""
    keys: dict[str, None] = {}
    for job in jobs:
        keys.update(dict.fromkeys(job.overrides))
    if len(jobs) < 2:
        return []
    return [k for k in keys if any(not _same(j.value(k), jobs[0].value(k)) for j in jobs[1:])]


def _test_metrics(jobs: Iterable[Job]) -> list[str]:
    """test/<metric> names of the completed runs: the task's metrics first, the loss last."""
    names: dict[str, None] = {}
    for job in jobs:
        if job.status == "completed":
            names.update(dict.fromkeys(job.summary.get("test") or {}))
    return [f"test/{n}" for n in sorted(names, key=lambda n: (n == "loss", n))]


def _direction(jobs: Iterable[Job]) -> tuple[str | None, str | None]:
    """(metric, mode) of the objective when every run that says agrees, else (names, None)."""
    seen = {(b.get("metric"), b.get("mode")) for j in jobs
            if isinstance(b := j.summary.get("best"), Mapping) and b.get("metric")}
    if len(seen) == 1:
        return next(iter(seen))
    if not seen:
        return None, None
    return " / ".join(sorted(str(m) for m, _ in seen)), None


def aggregate(sweep_dir: Path, jobs: Sequence[Job], seed_keys: Sequence[str] = SEED_KEYS
              ) -> Report:
    """Group the jobs into configurations and rank them by their mean objective."""
    swept = swept_keys(jobs)
    keys = tuple(k for k in swept if k not in seed_keys)
    seeds = tuple(k for k in swept if k in seed_keys)
    fixed = {k: v for k, v in (jobs[0].overrides.items() if jobs else ())
             if k not in swept and all(j.overrides.get(k) == v for j in jobs)}
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(repr([job.value(k) for k in keys]), []).append(job)
    metric_names = _test_metrics(jobs)
    rows = []
    for members in groups.values():
        done = [j for j in members if j.status == "completed"]
        rows.append(Row(
            params={k: members[0].value(k) for k in keys},
            jobs=tuple(members),
            objective=Stat.of(j.objective for j in done if j.objective is not None),
            metrics={m: Stat.of((j.summary.get("test") or {}).get(m[len("test/"):])
                                for j in done) for m in metric_names},
            wall_s=Stat.of(j.summary.get("wall_s") for j in members),
        ))
    metric, mode = _direction(jobs)
    if mode is not None:
        sign = -1.0 if mode == "max" else 1.0
        rows.sort(key=lambda r: (r.objective is None,
                                 sign * r.objective.mean if r.objective else 0.0))
    return Report(Path(sweep_dir), tuple(jobs), keys, seeds, fixed, tuple(rows), metric, mode)


def exit_code(report: Report) -> int:
    """What the sweep exits with: 0 if every run completed, 130 if one was interrupted, else 1."""
    return max((EXIT_CODES.get(j.status, 1) for j in report.jobs), default=0)


# ---------------------------------------------------------------------------------------------
# Formats


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return fmt(value)
    return str(value)


def objective_label(report: Report) -> str:
    arrow = {"max": " ↑", "min": " ↓"}.get(report.mode or "", "")
    return f"{report.metric or 'objective'}{arrow}"


def _columns(report: Report) -> list[str]:
    return [*report.keys, objective_label(report), *report.metric_columns, "n", "status",
            "wall s"]


def _cells(report: Report, row: Row) -> list[str]:
    return [
        *(_cell(row.params[k]) for k in report.keys),
        "" if row.objective is None else str(row.objective),
        *("" if row.metrics.get(m) is None else str(row.metrics[m])
          for m in report.metric_columns),
        str(row.completed),
        row.status,
        "" if row.wall_s is None else fmt(row.wall_s.mean),
    ]


def _headline(report: Report) -> str:
    runs, configs = len(report.jobs), len(report.rows)
    text = f"{runs} run{'s' * (runs != 1)}, {configs} configuration{'s' * (configs != 1)}"
    if report.metric:
        better = {"max": "higher is better", "min": "lower is better"}.get(
            report.mode or "", "runs disagree on the objective: not ranked")
        text += f"; objective {report.metric} ({better})"
    if report.seeds:
        text += f"; mean ± std over {', '.join(report.seeds)}, n runs completed"
    return text


def rich_table(report: Report) -> Table:
    """The table for the terminal: one row per configuration, the best first and in bold."""
    table = Table(title=f"sweep {report.sweep_dir}", caption=_headline(report),
                  header_style="bold")
    for i, name in enumerate(_columns(report)):
        table.add_column(name, justify="left" if i < len(report.keys) or name == "status"
                         else "right")
    for row in report.rows:
        style = "bold green" if row is report.best else ("red" if row.completed < len(row.jobs)
                                                         else None)
        table.add_row(*_cells(report, row), style=style)
    return table


def _first_line(text: Any) -> str:
    lines = str(text or "").strip().splitlines()
    return lines[0] if lines else ""


def failure_lines(report: Report) -> list[str]:
    """One line per run that did not complete: its directory, how it ended and why."""
    return [f"{job.name}: {job.status}: "
            f"{_first_line(job.summary.get('error')) or 'no summary.json: the run did not finish'}"
            for job in report.failures]


def to_csv(report: Report) -> str:
    """report.csv: one row per configuration, best first, raw numbers."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    stats = ["objective", *report.metric_columns, "wall_s"]
    writer.writerow(["rank", *report.keys, *(f"{s}_{p}" for s in stats for p in ("mean", "std")),
                     "n", "runs", "status", "metric", "mode", "dirs"])
    for rank, row in enumerate(report.rows, 1):
        values = [row.objective, *(row.metrics.get(m) for m in report.metric_columns), row.wall_s]
        numbers = []
        for stat in values:
            numbers += ["", ""] if stat is None else [stat.mean, "" if stat.std is None
                                                      else stat.std]
        dirs = [j.name for j in row.jobs]
        writer.writerow([rank, *(row.params[k] for k in report.keys), *numbers, row.completed,
                         len(row.jobs), row.status, report.metric or "", report.mode or "",
                         ";".join(dirs[:_LIST_CELLS]) + (";..." if len(dirs) > _LIST_CELLS
                                                        else "")])
    return out.getvalue()


def runs_csv(report: Report) -> str:
    """runs.csv: one row per run, for analyses of your own."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = [*report.keys, *report.seeds]
    writer.writerow(["dir", *keys, "status", "objective", *report.metric_columns, "wall_s",
                     "error"])
    for job in report.jobs:
        test = job.summary.get("test") or {}
        writer.writerow([job.name, *(job.value(k) for k in keys), job.status,
                         "" if job.objective is None else job.objective,
                         *(test.get(m[len("test/"):], "") for m in report.metric_columns),
                         job.summary.get("wall_s", ""), _first_line(job.summary.get("error"))])
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
        "command": "dltrain " + " ".join(overrides),
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
              "|" + "|".join("---" if i < len(report.keys) or name == "status" else "--:"
                             for i, name in enumerate(columns)) + "|"]
    for row in report.rows:
        cells = [_md_escape(c) for c in _cells(report, row)]
        if row is report.best:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    best = best_config(report)
    if best:
        spread = f" ± {fmt(best['std'])}" if best["std"] is not None else ""
        params = " ".join(f"{k}={_cell(v)}" for k, v in best["params"].items())
        lines += ["", f"**Best:** {params} — {best['metric']} {fmt(best['mean'])}{spread} "
                      f"(n={best['n']}). Again: `{best['command']}`"]
    if study:
        lines += ["", "## Optuna study", "",
                  f"Best of the study (every trial in its storage): value "
                  f"{_cell(study.get('best_value'))} with "
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


# ---------------------------------------------------------------------------------------------
# Plots


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
        label = ", ".join(f"{k}={_cell(row.params[k])}" for k in others)
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


# ---------------------------------------------------------------------------------------------
# Writing it all


def _write(path: Path, text: str) -> None:
    from dltrain.io import atomic_write

    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def _write_plots(report: Report) -> tuple[list[tuple[str, str]], dict[str, bytes], list[str]]:
    """plots/objective_vs_<key>.png for each swept key: ((key, path), ...), the PNGs by
    TensorBoard tag, and what could not be drawn."""
    from dltrain.io import safe_name

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
    for line in failure_lines(report):
        console.print(f"failed: {line}", style="red", highlight=False, markup=False,
                      soft_wrap=True)
    for line in notes:
        console.print(f"report: {line}", style="yellow", highlight=False, markup=False)
    console.print(f"report: {report.sweep_dir / 'report.md'}", highlight=False, markup=False)


def write_report(sweep_dir: Path, console: Console | None = None) -> Report:
    """Read the sweep, write its report files, print its table; return the report."""
    from dltrain.log.tensorboard import write_sweep_run

    sweep_dir = Path(sweep_dir)
    report = aggregate(sweep_dir, read_sweep(sweep_dir))
    plots, images, problems = _write_plots(report)
    study = None
    if (sweep_dir / "optimization_results.yaml").is_file():  # written by Hydra's Optuna sweeper
        study = yaml.safe_load((sweep_dir / "optimization_results.yaml").read_text()) or None
    markdown = to_markdown(report, plots, study)
    try:  # a lecture's experiment (experiment=NAME) adds its section below the table
        from dltrain.experiments import write_section

        markdown += write_section(report, images)
    except Exception as err:  # like a plot: a view of the sweep, never a reason to lose it
        problems.append(f"no experiment section: {type(err).__name__}: {err}")
    _write(sweep_dir / "report.csv", to_csv(report))
    _write(sweep_dir / "runs.csv", runs_csv(report))
    _write(sweep_dir / "report.md", markdown)
    best = best_config(report)
    if best is not None:
        _write(sweep_dir / "best.yaml", yaml.safe_dump(best, sort_keys=False))
    else:  # not one left over from an earlier report of this sweep
        (sweep_dir / "best.yaml").unlink(missing_ok=True)
    try:
        write_sweep_run(sweep_dir / "tb", images, {"report": markdown})
    except Exception as err:
        problems.append(f"no TensorBoard run: {type(err).__name__}: {err}")
    if console is None:
        from rich import get_console

        console = get_console()
    print_report(report, console, problems)
    return report
