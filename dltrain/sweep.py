"""What a sweep needs from Hydra: directory names, the value handed to a sweeper, the report.

conf/train.yaml names run and sweep directories with the resolvers registered here and hands
the start and the end of every multirun to `ReportCallback`: at the start it writes the jobs
the sweeper will launch (jobs.yaml, so that a report lists those that never started), at the
end the report. A sweep stopped by a signal does not reach Hydra's end of a multirun: the
command calls `report_interrupted_sweep` for it. Hydra's launchers re-resolve the directory names
in every job's process (a joblib worker, a SLURM node). The task in dltrain/cli/app.py imports
this module, and Hydra's context sent along holds a `ReportCallback`: unpickling either there
imports this module, which registers the resolvers, before Hydra resolves anything.
"""

from __future__ import annotations

import math
import secrets
import string
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dltrain.io import atomic_write, safe_name

UNIQUE = "dltrain.unique"
JOB_DIR = "dltrain.job_dir"
NAMED = "dltrain.named"


def unique_suffix(length: int = 4) -> str:
    """A short random tag (36^4 ≈ 1.7 million values) that keeps directories apart."""
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def job_dir_name(num: Any, overrides: Any) -> str:
    """A sweep job's directory: its number (unique within the sweep) and its overrides."""
    name = safe_name(str(overrides or ""))
    return f"{num}_{name}" if name else str(num)


def named_part(name: Any) -> str:
    """The run's name (`name=lr-study`) as part of a directory's name, `lr-study_`, or
    nothing without one. config.RULES refuses a name that is not filesystem-safe before
    Hydra makes a directory; `safe_name` keeps the directory right should one get here."""
    return f"{safe_name(str(name), 60)}_" if name not in (None, "") else ""


def register_resolvers() -> None:
    """`${dltrain.unique:}` (one value per composed config, kept by Hydra for all of a sweep's
    jobs), `${dltrain.job_dir:NUM,OVERRIDES}` and `${dltrain.named:NAME}`. Safe to call more
    than once."""
    if not OmegaConf.has_resolver(UNIQUE):
        OmegaConf.register_new_resolver(UNIQUE, unique_suffix, use_cache=True)
    if not OmegaConf.has_resolver(JOB_DIR):
        OmegaConf.register_new_resolver(JOB_DIR, job_dir_name)
    if not OmegaConf.has_resolver(NAMED):
        OmegaConf.register_new_resolver(NAMED, named_part)


register_resolvers()  # see the module's docstring: a launcher's worker process needs them too


def sweeper_value(summary: Mapping[str, Any], direction: Any = None) -> float | None:
    """The number a run hands to Hydra's sweeper.

    Without a direction (a grid sweep) it is summary.json's `objective` as it is. A sweeper that
    optimises (Optuna) fixes its direction before the first trial, while the objective's own
    direction depends on the task (accuracy is maximised, a loss minimised): the objective is
    turned to face the sweeper's direction, and a run that failed or diverged gets the worst
    value there is, so that the sampler steers away from where it happened.
    """
    value = summary.get("objective")
    if direction is None:
        return value
    maximise = str(direction).lower().endswith("maximize")
    ok = (summary.get("status") == "completed" and isinstance(value, (int, float))
          and math.isfinite(value))
    if not ok:
        return -math.inf if maximise else math.inf
    mode = (summary.get("best") or {}).get("mode", "max" if maximise else "min")
    return float(value) if (mode == "max") == maximise else -float(value)


BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


def planned_jobs(config: DictConfig) -> list[list[str]] | None:
    """The overrides of every job a multirun's sweeper will launch, by job number, as Hydra's
    basic sweeper makes them (its `params`, then the command line's overrides, expanded into
    their product); None for a sweeper that draws its trials as it goes (Optuna), or a sweep
    that only the sweeper's own config loader can expand (a glob over a config group)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    sweeper = config.hydra.sweeper
    if sweeper.get("_target_") != BASIC_SWEEPER:
        return None
    lines = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
    lines += [str(o) for o in config.hydra.overrides.task]
    try:
        parsed = OverridesParser.create().parse_overrides(lines)
        batches = BasicSweeper.split_arguments(parsed, None)
    except Exception:  # the sweeper says it in its words when it expands them itself
        return None
    return [list(job) for batch in batches for job in batch]


def write_plan(sweep_dir: Path, jobs: list[list[str]]) -> None:
    """jobs.yaml in the sweep directory: each job's overrides, by job number."""
    import yaml

    from dltrain.report.jobs import PLAN_FILE

    text = ("# The jobs of this sweep by number, as its sweeper planned them when it started:\n"
            "# dltrain report lists those that never started.\n"
            + yaml.safe_dump(jobs, default_flow_style=None, sort_keys=False, width=1000))
    atomic_write(sweep_dir / PLAN_FILE, lambda f: f.write(text.encode("utf-8")))


def sweep_dir_of(run_dir: str | Path) -> Path | None:
    """The sweep directory that holds the job directory `run_dir`, or None for a run that
    is not a sweep's job (its .hydra/hydra.yaml says hydra.mode): the nearest parent with
    the sweep's multirun.yaml or jobs.yaml (a job's subdir may be nested), else its parent."""
    import yaml

    from dltrain.report.jobs import PLAN_FILE

    run_dir = Path(run_dir).resolve()
    path = run_dir / ".hydra" / "hydra.yaml"
    if not path.is_file():
        return None
    hydra = (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("hydra") or {}
    if str(hydra.get("mode")) not in ("MULTIRUN", "RunMode.MULTIRUN"):
        return None
    for parent in run_dir.parents:
        if (parent / "multirun.yaml").is_file() or (parent / PLAN_FILE).is_file():
            return parent
    return run_dir.parent


def report_interrupted_sweep(run_dirs: Iterable[str | Path]) -> int | None:
    """Write the report of a sweep that a signal stopped, from the directories of the jobs
    that ran (the last one the job that was stopped); return the report's exit code, None
    when these are not a sweep's jobs.

    Hydra ends a multirun with its callbacks' on_multirun_end only when the sweeper returns:
    a job that stops the sweep (SystemExit(130), dltrain.cli.app.TrainTask) ends it without,
    so the command calls this where the sweep ends. The report shows the jobs that ran, the
    stopped one as interrupted, and those that never started. A report that cannot be
    written is one line on stderr: it never hides the interruption's exit code."""
    found = [d for d in (sweep_dir_of(r) for r in run_dirs) if d is not None]
    if not found:
        return None
    from dltrain.report import exit_code
    from dltrain.sweep_report import write_sweep_report

    try:
        report = write_sweep_report(found[-1])
    except Exception as err:  # the runs are safe in their directories; say why, go on
        print(f"dltrain: no report of the stopped sweep {found[-1]}: "
              f"{type(err).__name__}: {err}", file=sys.stderr)
        return None
    return exit_code(report)


class ReportCallback(Callback):
    """Starts every multirun by writing down its jobs (jobs.yaml) and ends it with the
    sweep's report (dltrain/sweep_report.py) and its exit code."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The sweep directory exists before the sweeper starts: Optuna opens its storage
        # (sqlite in the sweep directory) before the launcher makes the directory.
        sweep_dir = Path(str(config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        jobs = planned_jobs(config)
        if jobs is not None:
            write_plan(sweep_dir, jobs)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from dltrain.report import exit_code
        from dltrain.sweep_report import write_sweep_report

        report = write_sweep_report(Path(str(config.hydra.sweep.dir)))
        code = exit_code(report)
        # The jobs' own exit codes stay in their processes under a parallel launcher; the
        # summaries in the sweep directory say how every job ended, whatever launched it.
        if code:
            raise SystemExit(code)
