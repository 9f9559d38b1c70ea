"""Checkpoints: written atomically, read as data only.

A checkpoint holds tensors, numbers, strings, lists and dicts — nothing else — so it can be
loaded with `torch.load(..., weights_only=True)`, which refuses any pickled code: a checkpoint
from someone else cannot run anything on this machine.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.errors import ConfigError
from dltrain.io import atomic_write

FORMAT = 1


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` (plus the format number) to `path` through a temporary file."""
    payload = {"format": FORMAT, **payload}
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint as data; anything that is not plain data is refused (ConfigError)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"No checkpoint at {path}.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ConfigError(f"{path} is not a plain-data checkpoint and was not loaded (it holds "
                          f"objects that could run code): {str(err).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError) as err:
        raise ConfigError(f"{path} is truncated or corrupt: {str(err).splitlines()[0]}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a dltrain checkpoint (format {FORMAT}).")
    return payload


def rng_state() -> dict[str, Any]:
    """The random states of python, numpy and torch (and CUDA), as plain data."""
    state: dict[str, Any] = {"python": random.getstate(), "torch": torch.get_rng_state()}
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state["numpy"] = [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss]
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, gauss_np = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss_np))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
