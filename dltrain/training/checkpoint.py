"""Checkpoints: written atomically, read as data only, checked; a run's last.pt and best.pt.

A checkpoint holds tensors, numbers, strings, lists and dicts — nothing else — so it can be
loaded with `torch.load(..., weights_only=True)`, which refuses any pickled code: a checkpoint
from someone else cannot run anything on this machine. It carries a checksum of its content
(dltrain.training.digest), checked when it is loaded: a file changed after its save is
refused, not used. Whatever is wrong with a file given as a checkpoint (empty, a directory,
another kind of file, damaged, other data) is said in one sentence of ours (ConfigError);
torch's own text is never passed on (it speaks of its arguments, with terminal colours).
"""

from __future__ import annotations

import dataclasses
import logging
import pickle
import random
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.data.spec import Data
from dltrain.errors import ConfigError
from dltrain.io import NoSpaceError, atomic_write, remove_stale_temporaries
from dltrain.training.digest import content_digest
from dltrain.training.distributed import SINGLE, Dist
from dltrain.training.faults import fault
from dltrain.training.state import Parts, TrainState

log = logging.getLogger("dltrain")

FORMAT = 1
CHECKSUM = "checksum"  # the digest of every other entry; saved last, taken out at the load
# what a checkpoint must hold to be scored (best.pt; predict, export) and to be resumed
# (last.pt); load_checkpoint(path, need) refuses one without, naming what is missing
WEIGHTS = ("model", "state", "config", "spec")
RESUMABLE = (*WEIGHTS, "optimizer", "rng")
NAMES = ("last.pt", "best.pt")  # the files Checkpoints writes in a run's checkpoints/
_ZIP = b"PK\x03\x04"  # how every file torch.save writes begins (a zip archive)
_STATE_FIELDS = {f.name for f in dataclasses.fields(TrainState)}


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` (plus the format number and its checksum) to `path` through a
    temporary file. A full device raises NoSpaceError, `path` left as it was."""
    payload = {"format": FORMAT, **{k: v for k, v in payload.items() if k != CHECKSUM}}
    payload[CHECKSUM] = content_digest(payload)
    atomic_write(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, need: Sequence[str] = ()) -> dict[str, Any]:
    """Read a checkpoint as data and check it: its checksum, and that it holds the entries
    `need` (WEIGHTS, RESUMABLE) in their shapes. Anything else is refused (ConfigError), in a
    sentence that names the file. The checksum is not in the result."""
    path = Path(path)
    payload = _read(path)
    saved = payload.pop(CHECKSUM, None)
    if saved is None:
        # checkpoints written before checksums (dltrain 0.x): refusing them would strand every
        # run trained until now (resume, eval, predict, export) for a check they never had;
        # they load as they always did, their structure and weights still checked
        log.warning(f"{path} carries no checksum (written by an earlier dltrain): it is "
                    "loaded unchecked.")
    elif saved != content_digest(payload):
        raise ConfigError(f"{path} is corrupt: its content does not match the checksum saved "
                          "with it (the file changed after it was written); use a copy of "
                          "it or train again.")
    check_structure(path, payload, need)
    return payload


def peek_state(path: Path) -> dict[str, Any]:
    """A checkpoint's training state (step, best step) without reading its tensors (memory-
    mapped): enough to compare best.pt with last.pt, or to say which step last.pt holds."""
    payload = _read(Path(path), mmap=True)
    check_structure(Path(path), payload, ("state",))
    return dict(payload["state"])


def _read(path: Path, mmap: bool = False) -> dict[str, Any]:
    """torch.load as data, each way it can fail put in a sentence of ours."""
    if path.is_dir():
        raise ConfigError(f"{path} is a directory, not a checkpoint file.")
    if not path.is_file():
        raise ConfigError(f"No checkpoint at {path}.")
    try:
        with open(path, "rb") as f:
            head = f.read(len(_ZIP))
    except OSError as err:
        raise ConfigError(f"{path} cannot be read ({err.strerror or err}).") from None
    if not head:
        raise ConfigError(f"{path} is empty (0 bytes), not a checkpoint.")
    if head != _ZIP:
        raise ConfigError(f"{path} is not a checkpoint: it is not a file that torch.save "
                          "writes.")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise ConfigError(f"{path} is not a plain-data checkpoint and was not loaded: it "
                          "holds Python objects besides tensors, numbers, strings, lists and "
                          "dicts, which could run code.") from None
    except (RuntimeError, EOFError, OSError, ValueError):
        raise ConfigError(f"{path} is truncated or corrupt: torch cannot read it as a "
                          "checkpoint.") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a dltrain checkpoint (format {FORMAT}).")
    return payload


def check_structure(path: Path, payload: Mapping[str, Any], need: Sequence[str]) -> None:
    """Refuse a checkpoint without the entries `need`, or with one of another kind than its
    readers take (a crafted or foreign file): a sentence here, not a KeyError later."""
    kinds = {"model": "a dict of tensors", "state": "a training state",
             "optimizer": "an optimiser state", "rng": "random states"}
    for key in need:
        if key not in payload:
            raise ConfigError(f"{path} is not a complete dltrain checkpoint: it has no "
                              f"'{key}' entry.")
        if not _fits(key, payload[key]):
            what = kinds.get(key, "a dict")
            raise ConfigError(f"{path} is not a complete dltrain checkpoint: its '{key}' "
                              f"entry is not {what}.")


def _fits(key: str, value: Any) -> bool:
    if not isinstance(value, Mapping):
        return False
    if key == "model":
        return all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    if key == "state":
        return set(value) <= _STATE_FIELDS and isinstance(value.get("step"), int) \
            and isinstance(value.get("best_step", None), int | None)
    if key == "optimizer":
        return isinstance(value.get("state"), Mapping) \
            and isinstance(value.get("param_groups"), list)
    if key == "rng":
        return {"python", "torch", "numpy"} <= set(value)
    return True


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

    last.pt is written first: a process that dies between the two writes leaves last.pt
    naming itself the best step (state.best_step == state.step) beside an older best.pt, which
    dltrain.training.best_pair detects and rewrites from last.pt's weights when the pair is
    next read (resume, eval, the run's test). Built at the start of a run or resume, it removes
    the temporaries that a process killed mid-write left in its folder.
    """

    def __init__(self, parts: Parts, meta: dict[str, Any], folder: Path, d: Dist = SINGLE
                 ) -> None:
        self.parts = parts
        self.folder = folder
        self.meta = meta
        self.d = d
        for stale in remove_stale_temporaries(folder, NAMES):
            log.info(f"removed {stale.name}, left in {folder} by a write that was cut short")

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
        """last.pt, then best.pt (see the class). A full device ends the run with a sentence
        that says which checkpoint is still good (NoSpaceError)."""
        try:
            if last is not None:
                save_checkpoint(self.folder / "last.pt", last)
                fault("after-last-checkpoint", int(last["state"]["step"]))
            if best is not None:
                save_checkpoint(self.folder / "best.pt", best)
        except NoSpaceError as err:
            raise NoSpaceError(f"{err}; {last_good(self.folder)}") from None

    def __call__(self, state: TrainState, is_best: bool) -> None:
        last, best = self.payloads(state)
        self.write(last, best if is_best else None)


def last_good(folder: Path) -> str:
    """Which checkpoint of `folder` a failed write left, as the end of a sentence."""
    try:
        return f"the last good checkpoint is step {peek_state(folder / 'last.pt')['step']}"
    except ConfigError:
        return "no checkpoint was saved yet"


def rank_save(d: Dist) -> Callable[[TrainState, bool], None]:
    """The `save` of a rank other than 0: it keeps no files, and sends its random state to
    rank 0's checkpoint (a collective: every rank saves at the same points)."""

    def save(_state: TrainState, _is_best: bool) -> None:
        d.gather(rng_state())

    return save
