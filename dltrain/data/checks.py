"""What every reader of files checks the same way: a path before it is opened, and the values
once they are read.

A reader names its own file when it is missing (each says what it reads); what is wrong with
a path that exists is said here, once for all of them: a folder where a file belongs (or a
file where a folder belongs), a device or pipe, a file this process may not read. Values are
checked for NaN and infinities, which would otherwise reach the first layer and end the run
at step 1 as a divergence naming that layer, never the file; inputs that are one constant
across the whole training set are warned about (nothing to learn from, yet nothing invalid).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.errors import ConfigError

log = logging.getLogger("dltrain")

# The smallest standard deviation standardisation divides by (prepare.standardise,
# columns.statistics, prepare.channel_stats clamp to it): at or below it, an input is constant.
MIN_STD = 1e-6
_CHUNK = 1 << 22  # values scanned at a time in a file that is not read whole


def readable(path: Path, named: str) -> None:
    """Refuse a file this process cannot open for reading: "NAMED cannot be read: permission
    denied (PATH)."."""
    try:
        with open(path, "rb"):
            pass
    except PermissionError:
        raise ConfigError(f"{named} cannot be read: permission denied ({path}).") from None
    except OSError as err:
        raise ConfigError(f"{named} cannot be read ({err.strerror or err}: {path}).") from None


def _kind(path: Path, named: str) -> str | None:
    """"file", "folder", "other" (a device, a pipe, a socket) or None (nothing there); a
    folder on the way that may not be entered is refused as unreadable."""
    try:
        if path.is_dir():
            return "folder"
        if path.is_file():
            return "file"
        return "other" if path.exists() else None
    except PermissionError:
        raise ConfigError(f"{named} cannot be read: permission denied ({path}).") from None


def input_file(path: Path, setting: str, value: Any) -> None:
    """Refuse a path given as a file (`setting=value`) that exists but is no file to read: a
    folder, a device or pipe, or a file this process may not read. A path that does not
    exist passes: the reader says what it looked for."""
    kind = _kind(path, f"{setting}={value}")
    if kind == "folder":
        raise ConfigError(f"{setting}={value} is a directory, not a file; name a file in it.")
    if kind is None:
        return
    if kind != "file":
        raise ConfigError(f"{setting}={value} is not a regular file (a device, a pipe or a "
                          "socket); name a file.")
    readable(path, f"{setting}={value}")


def input_folder(path: Path, setting: str, value: Any, reads: str) -> None:
    """Refuse a path given as a folder (`setting=value`) that is a file, or a folder this
    process may not list; `reads` says what the folder is for ("data=mnist reads its files
    from a folder"). A folder that does not exist passes (it may be downloaded into)."""
    kind = _kind(path, f"{setting}={value}")
    if kind not in (None, "folder"):
        raise ConfigError(f"{setting}={value} is a file, not a folder; {reads}.")
    if kind == "folder":
        try:
            with os.scandir(path) as entries:
                next(entries, None)
        except PermissionError:
            raise ConfigError(f"{setting}={value} cannot be read: permission denied "
                              f"({path}).") from None


def _non_finite(values: Any) -> tuple[int, int | None]:
    """(count of NaN and infinite values, the first sample holding one) of an array (N, ...),
    a memory map or a tensor, scanned in chunks of samples."""
    if isinstance(values, torch.Tensor):
        if not values.is_floating_point() or bool(torch.isfinite(values).all()):
            return 0, None
        bad = ~torch.isfinite(values.reshape(len(values), -1))
        rows = bad.any(dim=1).nonzero()
        return int(bad.sum()), int(rows[0]) if len(rows) else None
    if np.dtype(values.dtype).kind not in "fc":
        return 0, None
    per_sample = max(1, int(np.prod(values.shape[1:], dtype=np.int64)))
    step = max(1, _CHUNK // per_sample)
    count, first = 0, None
    for start in range(0, len(values), step):
        block = np.asarray(values[start:start + step]).reshape(-1, per_sample)
        bad = ~np.isfinite(block)
        n = int(bad.sum())
        if n and first is None:
            first = start + int(np.flatnonzero(bad.any(axis=1))[0])
        count += n
    return count, first


def finite(values: Any, where: str, what: str = "values") -> None:
    """Refuse inputs holding NaN or infinite values, naming `where` (the file) and how many:
    "train-images-idx3-ubyte holds 3 NaN or infinite values (of 47,040,000; the first in
    sample 12)". `values` is an array (N, ...), a memory map or a tensor."""
    count, first = _non_finite(values)
    if count:
        total = int(np.prod(values.shape, dtype=np.int64))
        raise ConfigError(f"{where} holds {count:,} NaN or infinite {what} (of {total:,}; the "
                          f"first in sample {first}): a model cannot learn from them; fix or "
                          "remove those samples.")


def constant(std: torch.Tensor, where: str) -> bool:
    """Warn (and say True) when the training inputs' standard deviations (per feature or per
    channel, as standardisation computes them) are all zero: every sample is the same."""
    if std.numel() and bool((std <= MIN_STD).all()):
        log.warning(f"{where}: the training inputs are constant (zero variance across the "
                    "whole training set): a model can learn nothing from them.")
        return True
    return False
