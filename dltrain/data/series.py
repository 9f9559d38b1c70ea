"""data=series: a time series cut into windows of `data.window` past values -> the next
`data.horizon` values.

The series is columns of a CSV, TSV or Parquet file (`data.columns`, null = every numeric
column) or a 1-D / 2-D `.npy` ((T,) or (T, C)), one row a time step. It is split in time
before it is windowed: the first part trains, the next validates, the last tests
(`data.val_fraction` / `data.test_fraction` of its length, or the files `data.val_path` /
`data.test_path`), so no window reaches across a split and the model is always scored on a
future it has not seen. Each window is a signal (C, W) that every model family reads: a 1-D
CNN, a transformer (one token a step), an MLP (flattened).

Beside the model, the naive forecast (the window's last value, repeated over the horizon) is
scored on the validation and test windows, in the data's units: `Data.facts["baseline"]`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.data.checks import input_file
from dltrain.data.owned import Samples, assemble
from dltrain.data.spec import Data
from dltrain.data.table import READERS, read_frame
from dltrain.errors import ConfigError
from dltrain.rules import suggest

log = logging.getLogger(__name__)

@dataclass(frozen=True)
class Series:
    """A series as read: values (T, C) in time order, the name of each channel, its file."""

    values: np.ndarray
    names: tuple[str, ...]
    where: str


def _columns(frame: Any, columns: Any, path: Path) -> tuple[np.ndarray, tuple[str, ...]]:
    """The chosen columns of a table as floats (T, C): data.columns, or every numeric one."""
    names = list(frame.columns)  # read_frame names them as text
    if columns is None:
        chosen = [c for c in frame.columns if frame[c].dtype.kind in "biuf"]
        if not chosen:
            raise ConfigError(f"{path} has no numeric column to read as a series "
                              f"(its columns: {', '.join(names)}).")
    else:
        chosen = [columns] if isinstance(columns, str) else [str(c) for c in columns]
        for column in chosen:
            if column not in names:
                near = suggest(str(column), names)
                hint = f"; did you mean '{near}'?" if near else ""
                raise ConfigError(f"{path} has no column '{column}' (data.columns){hint} "
                                  f"Its columns: {', '.join(names)}.")
            if frame[column].dtype.kind not in "biuf":
                raise ConfigError(f"{path}: column '{column}' holds {frame[column].dtype} "
                                  "values, not numbers: a series is numeric.")
    return frame[chosen].to_numpy(dtype=np.float64), tuple(str(c) for c in chosen)


def read_series(value: Any, setting: str, columns: Any) -> Series:
    """The series in the file `value` names (from config key `setting`): (T, C) floats."""
    if value is None:
        raise ConfigError("data=series needs data.path=FILE: a CSV, TSV or Parquet file "
                          "(data.columns) or a 1-D / 2-D .npy.")
    path = Path(str(value)).expanduser()
    input_file(path, setting, value)  # a folder, a device, a file that may not be read
    if not path.is_file():
        raise ConfigError(f"{setting}={value}: no such file ({path.resolve()}).")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        if columns is not None:
            raise ConfigError(f"data.columns names columns of a table, but {path} is an .npy "
                              "array; leave data.columns=null.")
        try:
            values = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise ConfigError(f"{path} is not a readable .npy file ({err}).") from None
        if values.ndim not in (1, 2) or values.dtype.kind not in "biuf":
            raise ConfigError(f"{path} holds a {values.ndim}-D array of {values.dtype}; a "
                              "series is numbers, (T,) or (T, C) with one row a time step.")
        values = values.astype(np.float64).reshape(len(values), -1)
        names = tuple(str(c) for c in range(values.shape[1]))
    elif suffix in READERS:
        values, names = _columns(read_frame(path, setting), columns, path)
    else:
        raise ConfigError(f"{setting}={value} is not a series file: CSV, TSV, Parquet or .npy.")
    return Series(values, names, str(path))


def without_missing(series: Series, missing: str) -> tuple[Series, int]:
    """The series without its time steps that hold NaN (or infinite) values, and how many went:
    refused unless data.missing=drop."""
    bad = ~np.isfinite(series.values).all(axis=1)
    count = int(bad.sum())
    if count and missing != "drop":
        columns = [n for n, b in zip(series.names, (~np.isfinite(series.values)).any(axis=0),
                                     strict=True) if b]
        raise ConfigError(f"{series.where}: {count:,} of {len(bad):,} time steps hold NaN or "
                          f"empty values (columns {', '.join(columns)}; the first is row "
                          f"{int(np.flatnonzero(bad)[0])}); fill them, or drop them with "
                          "data.missing=drop.")
    if count == len(bad):
        raise ConfigError(f"{series.where}: every time step holds NaN or empty values.")
    return Series(series.values[~bad], series.names, series.where), count


def cut(length: int, val_fraction: float | None, test_fraction: float | None
        ) -> tuple[int, int]:
    """Where validation and test begin in a series of `length` steps: train is [0, a),
    validation [a, b), test [b, length). A fraction of None is a part given as its own file."""
    n_test = round(length * test_fraction) if test_fraction is not None else 0
    n_val = round(length * val_fraction) if val_fraction is not None else 0
    if n_test + n_val >= length:
        raise ConfigError(f"data.val_fraction={val_fraction} and data.test_fraction="
                          f"{test_fraction} leave no training part of a series of {length:,} "
                          "time steps.")
    return length - n_test - n_val, length - n_test


def windows(values: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every window of a part (T, C), one step apart: x (N, C, window), y (N, C * horizon).

    y is channel-major: y[n, c * horizon + h] is channel c at step h after the window, i.e.
    y reshaped to (N, C, horizon) is each channel's next `horizon` values.
    """
    span = np.lib.stride_tricks.sliding_window_view(values, window + horizon, axis=0)
    # span: (N, C, window + horizon)
    x = np.ascontiguousarray(span[:, :, :window], dtype=np.float32)
    y = np.ascontiguousarray(span[:, :, window:], dtype=np.float32).reshape(len(span), -1)
    return x, y


def naive_rmse(x: np.ndarray, y: np.ndarray) -> float:
    """RMSE of the naive forecast (each channel's last value, held over the horizon) of
    windows x (N, C, W) against their targets y (N, C * H), in the series' units."""
    n, channels = x.shape[:2]
    truth = y.reshape(n, channels, -1).astype(np.float64)
    guess = x[:, :, -1:].astype(np.float64)
    return float(np.sqrt(np.mean((truth - guess) ** 2)))


@dataclass(frozen=True)
class SeriesFile:
    """data=series: read, split in time, window each part, `assemble`."""

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        window, horizon = int(cfg["window"]), int(cfg["horizon"])
        missing = str(cfg["missing"])
        series, dropped = without_missing(read_series(cfg["path"], "data.path", cfg["columns"]),
                                          missing)
        given: dict[str, Series] = {}
        for part in ("val", "test"):
            value = cfg[f"{part}_path"]
            if value is not None:
                given[part], more = without_missing(
                    read_series(value, f"data.{part}_path", cfg["columns"]), missing)
                dropped += more
                if given[part].values.shape[1] != series.values.shape[1]:
                    raise ConfigError(f"{value} holds {given[part].values.shape[1]} channels "
                                      f"where {series.where} holds {series.values.shape[1]}.")
        a, b = cut(len(series.values),
                   None if "val" in given else float(cfg["val_fraction"]),
                   None if "test" in given else float(cfg["test_fraction"]))
        parts = {"train": series.values[:a],
                 "val": given["val"].values if "val" in given else series.values[a:b],
                 "test": given["test"].values if "test" in given else series.values[b:]}
        need = window + horizon
        cut_windows = {}
        for part, values in parts.items():
            if len(values) < need:
                source = given[part].where if part in given else series.where
                raise ConfigError(
                    f"{source}: the {part} part of the series has {len(values):,} time steps, "
                    f"fewer than data.window + data.horizon = {need}; use a longer series, a "
                    "shorter window or larger data.val_fraction / data.test_fraction.")
            cut_windows[part] = windows(values, window, horizon)
        channels = ", ".join(series.names)
        facts: dict[str, Any] = {
            "series": {"channels": list(series.names), "window": window, "horizon": horizon,
                       "steps": {p: len(v) for p, v in parts.items()},
                       "order": "y[n, c * horizon + h]: channel c, h steps after the window"},
            "baseline": {p: {"naive_rmse": naive_rmse(*cut_windows[p])} for p in ("val", "test")},
        }
        if dropped:
            log.info(f"data.missing=drop: dropped {dropped:,} time steps with missing values")
            facts["dropped_rows"] = dropped
        why = (f"regression: the next {horizon} value(s) of {channels} from the {window} "
               "before them")

        def samples(part: str) -> Samples:
            where = given[part].where if part in given else f"{series.where} ({part} part)"
            return Samples(*cut_windows[part], where)

        return assemble(cfg, device, samples("train"), kind="signal", task="regression",
                        why=why, val=samples("val"), test=samples("test"), chronological=True,
                        facts=facts)
