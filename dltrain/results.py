"""How a run ended, written down: exit codes, RunResult and summary.json's schema.

Torch-free: the command line reads exit codes and summaries without importing torch, and a
run, a vectorised stack and `dltrain eval` all write the same summary from here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dltrain.config import own_code

# The one table of exit codes (DESIGN.md "Exit codes").
EXIT_COMPLETED = 0
EXIT_FAILED = 1  # training failed: divergence, a runtime error
EXIT_BAD_INPUT = 2  # bad config or bad input, refused before training
EXIT_INTERRUPTED = 130  # stopped by a signal, checkpoint saved first
EXIT_CODES = {"completed": EXIT_COMPLETED, "failed": EXIT_FAILED, "diverged": EXIT_FAILED,
              "interrupted": EXIT_INTERRUPTED}

# The config groups whose chosen option summary.json names under `options`.
GROUPS = ("data", "model", "loss", "optim", "sched", "init")


class Progress(Protocol):
    """What the summary reads of a run's training state (dltrain.training.state.TrainState)."""

    epoch: int
    step: int
    samples: int
    train_s: float
    best_value: float | None
    best_step: int | None
    best_val: dict[str, float]
    stopped_early: bool
    skipped: int


class Monitoring(Protocol):
    """What the summary reads of the trainer's settings (dltrain.training.state.Settings)."""

    monitor: str
    mode: str
    nan_policy: str


@dataclass
class RunResult:
    """How a run ended: its status, the process exit code, and summary.json's content."""

    status: str
    exit_code: int
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def objective(self) -> float | None:
        return self.summary.get("objective")

    @classmethod
    def of(cls, summary: dict[str, Any], bad_input: bool = False) -> RunResult:
        """The result that a summary stands for (`bad_input`: refused before training)."""
        status = summary["status"]
        return cls(status, EXIT_BAD_INPUT if bad_input else EXIT_CODES.get(status, EXIT_FAILED),
                   summary)

    @classmethod
    def read(cls, run_dir: Path) -> RunResult:
        """The result a finished run left in its summary.json."""
        return cls.of(json.loads((Path(run_dir) / "summary.json").read_text()))


# A plain YAML run with `-cn NAME` is composed through a primary config named NAME + this
# (dltrain/cli/sources.py); the command that runs it again says `-cn NAME` (dltrain/report/).
PLAIN_SUFFIX = " on train"


def option_label(node: Mapping[str, Any], group: str = "model") -> str:
    """What a group's node is called in a run's line and its summary: the option's name, or
    the user's own class where they put it in place of a built-in option's
    (`model._target_=mynet.Net` on model=mlp trains mynet.Net, not an mlp; an option of their
    own, `-cd DIR` with DIR/model/mynet.yaml, keeps its name, whatever its class is called)."""
    name = str(node["name"])
    if own_code(node) and _builtin_target(group, name) not in (None, str(node["_target_"])):
        return str(node["_target_"])
    return name


def _builtin_target(group: str, name: str) -> str | None:
    """The `_target_` of dltrain's own option `group=name` (None: not one of dltrain's)."""
    import yaml

    from dltrain.choices import conf_dir

    path = conf_dir() / group / f"{name}.yaml"
    if not path.is_file():
        return None
    node = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return str(node.get("_target_"))


def run_options(config: Mapping[str, Any]) -> dict[str, str]:
    """summary.json's `options`: the option chosen in each config group."""
    return {g: option_label(config[g], g) for g in GROUPS
            if g in config and isinstance(config[g], Mapping) and "name" in config[g]}


def with_baseline(metrics: Mapping[str, float], facts: Mapping[str, Any], split: str
                  ) -> dict[str, float]:
    """A split's metrics with the data's baseline for that split beside them (Data.facts'
    "baseline": a series' naive forecast, `naive_rmse`), so that a reader sees at once
    whether the model did better than the obvious guess."""
    return {**metrics, **((facts.get("baseline") or {}).get(split) or {})}


def progress(state: Progress, settings: Monitoring) -> dict[str, Any]:
    """The summary's account of how far training went and how well it did."""
    account = {
        "epochs": state.epoch,
        "steps": state.step,
        "samples_per_s": round(state.samples / state.train_s, 1) if state.train_s else None,
        "best": {"metric": settings.monitor, "mode": settings.mode, "value": state.best_value,
                 "step": state.best_step},
        "val": state.best_val,
        "objective": state.best_value,
        "stopped_early": state.stopped_early,
    }
    if settings.nan_policy == "skip":
        account["skipped_steps"] = state.skipped
    return account
