"""data=sine_series: a procedural noisy multi-frequency signal to forecast, windowed exactly as
data=series windows a user's file.

The series is s(t) = sum_k sin(2 pi f_k t + phi_k) + noise, t = 0 .. length-1, with the
frequencies `data.frequencies` (cycles per step), phases phi_k drawn from `data.seed`, and
Gaussian noise of std `data.noise`. It is split in time (train, validation, test) and cut into
windows of `data.window` past values -> the next `data.horizon` values (dltrain/data/series.py),
with the naive forecast's RMSE beside the model's in the summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dltrain.data.owned import Samples, assemble
from dltrain.data.series import cut, naive_rmse, windows
from dltrain.data.spec import Data
from dltrain.errors import ConfigError


def sine_series(length: int, frequencies: Sequence[float], noise: float, seed: int
                ) -> np.ndarray:
    """The series (length, 1): a sum of sines of random phase, plus Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    phases = 2 * math.pi * torch.rand(len(frequencies), generator=gen, dtype=torch.float64)
    t = torch.arange(length, dtype=torch.float64)
    f = torch.tensor([float(v) for v in frequencies], dtype=torch.float64)
    clean = torch.sin(2 * math.pi * f[:, None] * t[None, :] + phases[:, None]).sum(dim=0)
    noisy = clean + noise * torch.randn(length, generator=gen, dtype=torch.float64)
    return noisy.numpy().reshape(length, 1)


@dataclass(frozen=True)
class SineSeries:
    """data=sine_series: draw the series, split it in time, window each part, `assemble`."""

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        window, horizon = int(cfg["window"]), int(cfg["horizon"])
        values = sine_series(int(cfg["length"]), cfg["frequencies"], float(cfg["noise"]),
                             int(cfg["seed"]))
        a, b = cut(len(values), float(cfg["val_fraction"]), float(cfg["test_fraction"]))
        parts = {"train": values[:a], "val": values[a:b], "test": values[b:]}
        need = window + horizon
        for part, steps in parts.items():
            if len(steps) < need:
                raise ConfigError(
                    f"data=sine_series: the {part} part of the series has {len(steps):,} steps, "
                    f"fewer than data.window + data.horizon = {need}; use a larger data.length "
                    "or a shorter window.")
        cut_windows = {p: windows(v, window, horizon) for p, v in parts.items()}
        facts: dict[str, Any] = {
            "series": {"channels": ["s"], "window": window, "horizon": horizon,
                       "steps": {p: len(v) for p, v in parts.items()}},
            "baseline": {p: {"naive_rmse": naive_rmse(*cut_windows[p])} for p in ("val", "test")},
        }
        why = f"regression: the next {horizon} value(s) of the signal from the {window} before"

        def samples(part: str) -> Samples:
            return Samples(*cut_windows[part], f"data=sine_series ({part} part)")

        return assemble(cfg, device, samples("train"), kind="signal", task="regression",
                        why=why, val=samples("val"), test=samples("test"), chronological=True,
                        facts=facts)
