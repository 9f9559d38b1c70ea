"""How much memory a run may still take, and the sentence when something will not fit.

The data builders (a generated set of `data.n_train` samples) and the model's footprint
(dltrain/models/footprint.py) ask `room_on(device)` before they allocate, and refuse with the
numbers; `ran_out(err)` recognises an allocation that failed anyway (torch's
OutOfMemoryError, the CPU allocator's RuntimeError, Python's MemoryError) and says in words
what ran out, so that no run ends on an allocator's traceback.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch

from dltrain.errors import ConfigError

MEMINFO = Path("/proc/meminfo")
# cgroup v2: a container's limit and what it holds now (a machine's MemAvailable is not the
# container's, where a limit is set)
CGROUP = Path("/sys/fs/cgroup")
_UNITS = ("bytes", "kB", "MB", "GB", "TB", "PB", "EB")
_TRIED = re.compile(r"(?:tried to allocate|Tried to allocate) ([\d.]+ ?[KMGTP]?i?B|\d+ bytes)")


@dataclass(frozen=True)
class Room:
    """The bytes free where tensors of a device live, and how a sentence names that place."""

    free: int
    where: str  # "this machine", "cuda:0"


def size_text(n: float) -> str:
    """Bytes in decimal units, as a person says them: 812 MB, 1.2 TB."""
    value, unit = float(n), 0
    while value >= 1000 and unit < len(_UNITS) - 1:
        value, unit = value / 1000, unit + 1
    if unit == 0:
        return f"{int(value)} bytes"
    return f"{value:.1f} {_UNITS[unit]}" if value < 100 else f"{value:.0f} {_UNITS[unit]}"


def _meminfo_available() -> int | None:
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # not Linux: the pages free now (less than what could be freed, never more)
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_room() -> int | None:
    try:
        limit = (CGROUP / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((CGROUP / "memory.current").read_text().strip()))
    except (OSError, ValueError):
        return None


def host_free() -> int | None:
    """Bytes this process can still take on the host (None where the system does not say)."""
    known = [n for n in (_meminfo_available(), _cgroup_room()) if n is not None]
    return min(known) if known else None


def room_on(device: torch.device | str) -> Room | None:
    """The memory free where `device` keeps its tensors: a GPU's own memory, else the host's
    (an Apple GPU shares it); None where it cannot be told."""
    device = torch.device(device)
    if device.type == "cuda":
        try:
            free, _ = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):
            return None
        return Room(int(free), f"GPU {device}")
    free = host_free()
    return None if free is None else Room(free, "this machine")


def short_of(need: int, device: torch.device | str, host: int | None = None
             ) -> tuple[Room, int] | None:
    """(the place, the bytes wanted there) where `need` bytes on `device` do not fit in the
    memory free, or None where they fit (or nothing can be told). For a GPU, `host` bytes are
    wanted on the host as well (what is drawn or built there first, then moved)."""
    device = torch.device(device)
    wants = [(device, need)]
    if device.type == "cuda" and host:
        wants.append((torch.device("cpu"), host))
    for place, bytes_ in wants:
        room = room_on(place)
        if room is not None and bytes_ > room.free:
            return room, bytes_
    return None


def refuse_unless_room(need: int, what: str, device: torch.device | str, advice: str,
                       host: int | None = None) -> None:
    """ConfigError "WHAT needs about SIZE, and PLACE has FREE free; ADVICE." when `need` bytes
    on `device` (and `host` bytes on the host, for a GPU) do not fit (see `short_of`)."""
    short = short_of(need, device, host)
    if short is not None:
        room, wanted = short
        raise ConfigError(f"{what} needs about {size_text(wanted)}, and {room.where} has "
                          f"{size_text(room.free)} free; {advice}.")


def ran_out(err: BaseException) -> str | None:
    """What ran out, in a phrase, when `err` is a failed allocation; None for anything else.

    "the GPU's memory ran out (it tried to allocate 2.00 GiB)"; "the machine's memory ran
    out (it tried to allocate 80.0 GB)".
    """
    text = str(err)
    gpu = isinstance(err, torch.OutOfMemoryError) or "CUDA out of memory" in text
    host = isinstance(err, MemoryError) or any(
        words in text for words in ("DefaultCPUAllocator", "not enough memory",
                                    "can't allocate memory", "Cannot allocate memory"))
    if not (gpu or host):
        return None
    tried = _TRIED.search(text)
    amount = ""
    if tried:
        size = tried.group(1)
        if size.endswith(" bytes"):
            size = size_text(int(size.split()[0]))
        amount = f" (it tried to allocate {size})"
    return f"the {'GPU' if gpu else 'machine'}'s memory ran out{amount}"


@contextmanager
def out_of_memory_refused(what: str, advice: str) -> Iterator[None]:
    """Turn an allocation that fails inside the block into ConfigError "WHAT: PHRASE; ADVICE."
    (`ran_out`'s phrase); any other error passes unchanged."""
    try:
        yield
    except (RuntimeError, MemoryError) as err:  # torch.OutOfMemoryError is a RuntimeError
        phrase = ran_out(err)
        if phrase is None:
            raise
        raise ConfigError(f"{what}: {phrase}; {advice}.") from None
