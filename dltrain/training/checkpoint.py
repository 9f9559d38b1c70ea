"""Checkpoints: written atomically, read as data only; a run's last.pt and best.pt.

A checkpoint holds tensors, numbers, strings, lists and dicts — nothing else — so it can be
loaded with `torch.load(..., weights_only=True)`, which refuses any pickled code: a checkpoint
from someone else cannot run anything on this machine.
"""

from __future__ import annotations

import pickle
import random
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.data.spec import Data
from dltrain.errors import ConfigError
from dltrain.io import atomic_write
from dltrain.training.distributed import SINGLE, Dist
from dltrain.training.state import Parts, TrainState

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


def checkpoint_meta(config: Mapping[str, Any], spec: dict[str, Any], data: Data
                    ) -> dict[str, Any]:
    """What every checkpoint of a run carries besides its states: the resolved config, the
    model's spec and the data's normalisation (enough to rebuild the model and feed it raw
    inputs), with, under norm["target"], how regression targets were standardised (enough to
    put its predictions back in the data's units), and what the reader of the user's own
    files decided (`data`: the features, the categories of one-hot columns, the task and why),
    which a new table's rows must be encoded with."""
    norm = dict(data.norm)
    if data.target_scale is not None:
        norm["target"] = data.target_scale.to_dict()
    return {"config": dict(config), "spec": spec, "norm": norm, "data": dict(data.facts)}


class Checkpoints:
    """A run's checkpoints/: last.pt with everything a resume needs, best.pt with the weights.

    Called as `save(state, is_best)` after each validation: last.pt always, best.pt when the
    monitored metric improved. `compose` makes both from states kept elsewhere, for a caller
    that writes them later (the members of a vectorised stack).
    """

    def __init__(self, parts: Parts, meta: dict[str, Any], folder: Path, d: Dist = SINGLE
                 ) -> None:
        self.parts = parts
        self.folder = folder
        self.meta = meta
        self.d = d

    def payloads(self, state: TrainState) -> tuple[dict[str, Any], dict[str, Any]]:
        """(last.pt, best.pt) of the run as it stands now. In a data-parallel job last.pt also
        holds every process's random state (`rng_ranks`; the others send theirs, see
        `rank_save`): each draws its own dropout masks, and a resume gives each its own back."""
        parts, rng = self.parts, rng_state()
        ranks = self.d.gather(rng)
        assert parts.optimizer is not None
        last, best = self.compose(state, parts.model.state_dict(), parts.optimizer.state_dict(),
                                  parts.scheduler.state_dict() if parts.scheduler else None,
                                  parts.scaler.state_dict() if parts.scaler else None, rng)
        if self.d.active:
            last["rng_ranks"] = ranks
        return last, best

    def compose(self, state: TrainState, model: dict[str, Any],
                optimizer: dict[str, Any] | None = None, scheduler: Any = None,
                scaler: Any = None, rng: dict[str, Any] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(last.pt, best.pt) from the given states; best.pt's entries are last.pt's own."""
        weights = {"model": model, "state": state.to_dict(), **self.meta}
        return {**weights, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler,
                "rng": rng}, weights

    def write(self, last: dict[str, Any] | None, best: dict[str, Any] | None) -> None:
        if last is not None:
            save_checkpoint(self.folder / "last.pt", last)
        if best is not None:
            save_checkpoint(self.folder / "best.pt", best)

    def __call__(self, state: TrainState, is_best: bool) -> None:
        last, best = self.payloads(state)
        self.write(last, best if is_best else None)


def rank_save(d: Dist) -> Callable[[TrainState, bool], None]:
    """The `save` of a rank other than 0: it keeps no files, and sends its random state to
    rank 0's checkpoint (a collective: every rank saves at the same points)."""

    def save(_state: TrainState, _is_best: bool) -> None:
        d.gather(rng_state())

    return save
