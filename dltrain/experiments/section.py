"""An experiment's part of the report, and the grouping of runs every experiment does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from dltrain.experiments.readers import Run


@dataclass(frozen=True)
class Section:
    """An experiment's part of the report."""

    name: str
    point: str  # the lecture's point, one paragraph
    findings: list[str]  # what this sweep measured: sentences with numbers
    rows: list[dict[str, Any]]  # the numbers behind the figures: experiment.csv
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG


def finite_mean(values: Sequence[float]) -> float:
    """The mean of the finite values (nan if there is none)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def run_label(run: Run, keys: Sequence[str]) -> str:
    """A configuration's name in tables and legends: `key=value, ...` of the swept keys."""
    return ", ".join(f"{k}={run.value(k)}" for k in keys) or "all runs"


def group_runs(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, list[Run]]:
    """Runs grouped by their values of `keys`, in sweep order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(run_label(run, keys), []).append(run)
    return groups


def capacity_key(keys: Sequence[str]) -> str | None:
    """The swept key that sets a model's size, if one is swept."""
    for key in ("model.width", "model.hidden", "model.depth", "model.channels"):
        if key in keys:
            return key
    return None
