"""metrics.jsonl: one JSON object per logged point, appended (a resumed run continues it)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path

from dltrain.log import NullLogger


def _jsonable(value: float) -> float | str:
    """JSON has no NaN or infinity; write them as strings rather than invalid JSON."""
    return value if math.isfinite(value) else str(value)


class JsonlLogger(NullLogger):
    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 (lives with the run)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        record = {"step": step, "time": round(time.time(), 3)}
        record.update({k: _jsonable(float(v)) for k, v in metrics.items()})
        self.file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        self.file.close()
