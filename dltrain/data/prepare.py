"""What every data set goes through once it is made or read: the validation split carved from
the training pool, and normalisation statistics taken from the train split alone.
"""

from __future__ import annotations

import numpy as np
import torch

from dltrain.errors import ConfigError


def n_validation(n_pool: int, val_fraction: float, what: str) -> int:
    """How many of `n_pool` training samples are held out for validation (at least one each)."""
    n_val = round(n_pool * float(val_fraction))
    if n_val < 1 or n_val >= n_pool:
        raise ConfigError(f"data.val_fraction={val_fraction} of {what} leaves no validation "
                          "or no training samples.")
    return n_val


def pool_index(n_files: int, n_train: int | None, seed: int, name: str) -> np.ndarray:
    """The training pool drawn from a file's `n_files` samples: all of them, or `n_train`,
    in an order fixed by `seed` (so the validation split is a random sample, not a file's tail).
    """
    if n_train is not None and n_train > n_files:
        raise ConfigError(f"data.n_train={n_train} is more than the {n_files:,} training "
                          f"samples of data={name}.")
    order = torch.randperm(n_files, generator=torch.Generator().manual_seed(seed)).numpy()
    return order[:n_train] if n_train is not None else order


def standardise(train: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the training inputs: per feature for vectors, per channel for images."""
    dims = (0,) if kind == "vector" else tuple(d for d in range(train.ndim) if d != 1)
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return mean, std


def channel_stats(x: np.ndarray, index: np.ndarray, scale: float, chunk: int = 4096
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of `x[index] / scale` (N, C, ...), read `chunk` rows at a time.

    The same numbers as `standardise` on the whole split in memory, for a split that is only
    read from its file; sums are kept in float64 so that millions of pixels add up exactly.
    """
    channels = x.shape[1]
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for start in range(0, len(index), chunk):
        rows = np.sort(index[start:start + chunk])  # sorted: a memory map reads forwards
        block = np.asarray(x[rows], dtype=np.float64) / scale
        block = block.reshape(len(rows), channels, -1)
        total += block.sum(axis=(0, 2))
        squares += np.square(block).sum(axis=(0, 2))
        count += block.shape[0] * block.shape[2]
    mean = total / count
    var = (squares - count * mean**2) / max(count - 1, 1)  # unbiased, as torch.std
    std = np.sqrt(np.maximum(var, 0.0))
    shape = (1, channels) + (1,) * (x.ndim - 2)
    return (torch.tensor(mean, dtype=torch.float32).view(shape),
            torch.tensor(std, dtype=torch.float32).view(shape).clamp_min(1e-6))
