"""What a sweep needs from Hydra: directory names, the value handed to a sweeper, the report.

conf/train.yaml names run and sweep directories with the resolvers registered here and hands
the end of every multirun to `ReportCallback`. Hydra's launchers re-resolve the directory names
in every job's process (a joblib worker, a SLURM node). The task in dltrain/cli/app.py imports
this module, and Hydra's context sent along holds a `ReportCallback`: unpickling either there
imports this module, which registers the resolvers, before Hydra resolves anything.
"""

from __future__ import annotations

import math
import secrets
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from dltrain.io import safe_name

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


class ReportCallback(Callback):
    """Ends every multirun with the sweep's report (dltrain/sweep_report.py) and its exit
    code."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # The sweep directory exists before the sweeper starts: Optuna opens its storage
        # (sqlite in the sweep directory) before the launcher makes the directory.
        Path(str(config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from dltrain.report import exit_code
        from dltrain.sweep_report import write_sweep_report

        report = write_sweep_report(Path(str(config.hydra.sweep.dir)))
        code = exit_code(report)
        # The jobs' own exit codes stay in their processes under a parallel launcher; the
        # summaries in the sweep directory say how every job ended, whatever launched it.
        if code:
            raise SystemExit(code)
