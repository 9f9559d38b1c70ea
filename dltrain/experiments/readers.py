"""What the runs of a sweep left: a completed job and its directory, the scalars of
metrics.jsonl (which the probes fill under their tags, dltrain/probes/tags.py) and the fit probe's
fit.npz. Plain reading, no torch."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.probes.tags import FIT_FILE, tag
from dltrain.report import Job


@dataclass(frozen=True)
class Run:
    """A completed job of the sweep and where its files are."""

    job: Job
    path: Path

    def value(self, key: str) -> Any:
        return self.job.value(key)

    @property
    def summary(self) -> dict[str, Any]:
        return self.job.summary


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as a list of records ([] if there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def scalars_at(records: Sequence[Mapping[str, Any]], step: int, prefix: str
               ) -> dict[str, float]:
    """The scalars logged at `step` whose tags start with `prefix`, in the order logged."""
    found: dict[str, float] = {}
    for record in records:
        if record.get("step") == step:
            found.update({k: v for k, v in record.items() if k.startswith(prefix)})
    return found


def layer_profile(records: Sequence[Mapping[str, Any]], probe: str, stat: str
                  ) -> list[tuple[str, float]]:
    """[(layer, value)] of `<probe>/<layer>/<stat>` at step 0, in model order, the output
    layer `head` left out (it has the width of the task, not of the network). `probe` is the
    probe's tag, e.g. tags.ACTIVATIONS."""
    prefix = tag(probe, "")
    values = scalars_at(records, 0, prefix)
    return [(name[len(prefix):-len(stat) - 1], float(v)) for name, v in values.items()
            if name.endswith(f"/{stat}") and not name[len(prefix):].startswith("head/")]


def curve(records: Sequence[Mapping[str, Any]], name: str) -> list[tuple[int, float]]:
    """[(step, value)] of a logged scalar."""
    return [(int(r["step"]), float(r[name])) for r in records
            if isinstance(r.get(name), (int, float))]


def read_fit(run_dir: Path) -> dict[str, np.ndarray] | None:
    """fit.npz of the fit probe (None if the run has none)."""
    path = Path(run_dir) / FIT_FILE
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return {k: saved[k] for k in saved.files}
