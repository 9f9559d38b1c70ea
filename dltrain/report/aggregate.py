"""Aggregating a sweep: jobs that differ only in a seed key (`trainer.seed`) are one
configuration, whose objective and test metrics are given as mean ± sample standard deviation
over those runs, with their number n."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain.hparams import SEED_KEYS
from dltrain.log.console import fmt
from dltrain.report.jobs import Job, launch_args
from dltrain.results import EXIT_CODES, EXIT_FAILED


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
    wall_s: Stat | None  # each run's own wall time (summary.json's wall_s)
    startup_s: Stat | None = None  # what the first run of a process paid once before it

    @property
    def names(self) -> str:
        """The runs' names (`name=`), each once, in run order; empty if none has one."""
        return ", ".join(dict.fromkeys(n for j in self.jobs if (n := j.run_name)))

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
    launch: tuple[str, ...] = ()  # -cd DIR, -cn NAME, hydra.searchpath: kept in a rerun

    @property
    def failures(self) -> list[Job]:
        return [j for j in self.jobs if j.status != "completed"]

    @property
    def best(self) -> Row | None:
        if self.mode is None or not self.rows or self.rows[0].objective is None:
            return None
        return self.rows[0]

    @property
    def named(self) -> bool:
        """Whether the table has a name column: some run has a name, and `name` is not a
        swept key (then it has its column already)."""
        return "name" not in self.keys and any(j.run_name for j in self.jobs)

    @property
    def startup(self) -> bool:
        """Whether some run paid a process's start-up (the first job of a sweep's process):
        then the table shows it beside the runs' own wall times."""
        return any(r.startup_s is not None and r.startup_s.mean > 0 for r in self.rows)

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
            startup_s=Stat.of(j.summary.get("startup_s") for j in members),
        ))
    metric, mode = _direction(jobs)
    if mode is not None:
        sign = -1.0 if mode == "max" else 1.0
        rows.sort(key=lambda r: (r.objective is None,
                                 sign * r.objective.mean if r.objective else 0.0))
    first = Path(sweep_dir) / jobs[0].name if jobs else Path(sweep_dir)
    launch = tuple(launch_args(first if first.is_dir() else Path(sweep_dir))) if jobs else ()
    return Report(Path(sweep_dir), tuple(jobs), keys, seeds, fixed, tuple(rows), metric, mode,
                  launch)


def exit_code(report: Report) -> int:
    """What the sweep exits with: 0 if every run completed, 130 if one was interrupted, else 1.
    A job that never started does not count: what stopped the sweep before it has its code."""
    return max((EXIT_CODES.get(j.status, EXIT_FAILED) for j in report.jobs if j.started),
               default=0)
