"""Generated operator data, cached under data.root by a checksum of what determines it.

A draw (the problem, its physical parameters, how many samples, the seed, the resolutions and
the generator's version) has one file, `ROOT/operators/<problem>-<checksum>.npz`, written
atomically; a later run with the same parameters reads it instead of solving again. The file
keeps how long the generation took, for the run's summary. A file that cannot be read (cut
short, or edited) is generated again and replaced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.io import atomic_write

log = logging.getLogger(__name__)

VERSION = 2  # raise when a solver changes what it produces: old files are then not read

Pairs = dict[int, tuple[torch.Tensor, torch.Tensor]]  # resolution -> (inputs, targets)


@dataclass(frozen=True)
class Draw:
    """One draw of a problem: what its checksum is taken of."""

    problem: str
    params: Mapping[str, Any]  # physical parameters (e.g. the viscosity)
    n: int
    seed: int
    resolutions: tuple[int, ...]

    def checksum(self) -> str:
        key = {"problem": self.problem, "params": dict(sorted(self.params.items())),
               "n": self.n, "seed": self.seed, "resolutions": list(self.resolutions),
               "version": VERSION}
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]

    def path(self, root: Path) -> Path:
        return root / "operators" / f"{self.problem}-{self.checksum()}.npz"


@dataclass
class Drawn:
    """A draw's pairs, and how they were had: generated now (seconds) or read from `path`."""

    pairs: Pairs
    generated_s: float  # how long the generation took (when the file was written, if cached)
    cached: bool
    path: Path


def _read(path: Path, draw: Draw) -> tuple[Pairs, float] | None:
    try:
        with np.load(path, allow_pickle=False) as archive:
            meta = json.loads(str(archive["meta"]))
            if meta.get("checksum") != draw.checksum():
                return None
            pairs = {res: (torch.from_numpy(archive[f"x_{res}"]),
                           torch.from_numpy(archive[f"y_{res}"]))
                     for res in draw.resolutions}
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, EOFError, json.JSONDecodeError):
        return None
    return pairs, float(meta["generated_s"])


def _write(path: Path, draw: Draw, pairs: Pairs, seconds: float) -> None:
    arrays = {}
    for res, (x, y) in pairs.items():
        arrays[f"x_{res}"], arrays[f"y_{res}"] = x.numpy(), y.numpy()
    meta = json.dumps({"checksum": draw.checksum(), "problem": draw.problem,
                       "params": dict(draw.params), "n": draw.n, "seed": draw.seed,
                       "resolutions": list(draw.resolutions), "generated_s": seconds})
    atomic_write(path, lambda f: np.savez(f, meta=np.array(meta), **arrays))


def cached(draw: Draw, root: Path, generate: Callable[[torch.Generator], Pairs]) -> Drawn:
    """The draw's pairs from its file under `root`, else `generate(generator)` (seeded with
    the draw's seed, on one thread: the same numbers on every machine), written there."""
    path = draw.path(root)
    if path.is_file():
        found = _read(path, draw)
        if found is not None:
            return Drawn(found[0], found[1], True, path)
        log.warning(f"{path} cannot be read: generating it again")
    threads = torch.get_num_threads()
    start = time.perf_counter()
    try:
        # One thread: the solvers' small batched operations gain little from more, lose much
        # when the cores are shared (OpenMP threads wait on each other), and a reduction
        # then sums in one order on every machine.
        torch.set_num_threads(1)
        pairs = generate(torch.Generator().manual_seed(draw.seed))
    finally:
        torch.set_num_threads(threads)
    seconds = time.perf_counter() - start
    _write(path, draw, pairs, seconds)
    return Drawn(pairs, seconds, False, path)
