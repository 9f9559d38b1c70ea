"""The machine a run executes on: device choice, seeding, determinism, environment facts."""

from __future__ import annotations

import hashlib
import os
import platform
import random
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

import dltrain
from dltrain.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks cuda > mps > cpu; an explicit device that is not there is a config error."""
    name = str(name)
    mps = getattr(torch.backends, "mps", None)
    has_mps = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if has_mps else "cpu")
    if name.startswith("cuda"):
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= count:
            seen = f"{count} CUDA device{'s' if count != 1 else ''}"
            raise ConfigError(f"trainer.device={name} is not available on this machine "
                              f"({seen} visible); use trainer.device=auto or cpu.")
    if name == "mps" and not has_mps:
        raise ConfigError("trainer.device=mps is not available on this machine; "
                          "use trainer.device=auto or cpu.")
    return torch.device(name)


def derived_seed(*parts: object) -> int:
    """32 bits hashed from `parts`: torch's CPU generator keeps only 32 bits of its seed, so
    (seed, epoch) is hashed rather than packed side by side (which would give every seed the
    same orders)."""
    digest = hashlib.blake2b(":".join(map(str, parts)).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices): initialisation and dropout follow `seed`."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _flushing_denormals() -> bool:
    """Whether the CPU computes numbers below float32's normal range as 0 (torch has no
    getter for torch.set_flush_denormal)."""
    return bool((torch.tensor([1e-39]) * 1.0)[0] == 0)


@contextmanager
def flush_denormals(device: torch.device) -> Iterator[None]:
    """On the CPU, numbers below float32's normal range (~1.2e-38) computed as 0 for the
    block (torch.set_flush_denormal), restored afterwards.

    Adam's moments of parameters whose gradients have faded (a dead unit, batches already
    classified with certainty) decay geometrically into that range, where an x86 CPU
    computes several times slower: in a stack of 64 small runs, after a few thousand steps,
    the optimiser step took 0.44 ms instead of 0.08. What is lost is below 1e-38.
    """
    if device.type != "cpu" or _flushing_denormals() or not torch.set_flush_denormal(True):
        yield
        return
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


@contextmanager
def deterministic(enabled: bool) -> Iterator[None]:
    """torch.use_deterministic_algorithms for the block, restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled()
    if not enabled or before:
        # Nothing to switch. (Calling use_deterministic_algorithms at all loads ~70 MB of
        # torch's machinery: a run that does not ask for it should not pay for it.)
        yield
        return
    # cuBLAS needs a fixed workspace to be deterministic; harmless elsewhere.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(False)


def git_commit(cwd: str | None = None) -> str | None:
    """The commit checked out where the run was started, if that is a git repository."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True,
                             text=True, timeout=2, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Versions and hardware that a result depends on, for summary.json."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
        "dltrain": dltrain.__version__,
        "platform": platform.platform(),
        "threads": torch.get_num_threads(),
        "git": git_commit(),
    }
