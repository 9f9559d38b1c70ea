"""Files: atomic writes (a reader, or a crash, never sees a half-written file) and safe names."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

NAME_LIMIT = 120  # characters of a name made by safe_name
_UNSAFE = re.compile(r"[^\w.,=+\-\[\]{}@%~]")  # path separators, quotes, spaces, ':' and the like
# what a write fails with when the device is full, or the user's quota is: the same to the user
_NO_SPACE = {errno.ENOSPC, errno.EDQUOT}
# the random middle of a temporary's name: tempfile's 8 characters of [a-z0-9_]
_TEMP_TAG = r"[a-z0-9_]{8}"


class NoSpaceError(OSError):
    """A write that failed for want of space on its device, said in one sentence (str(err)):
    it needs no traceback, and the caller may add what was kept (the last good checkpoint)."""


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows.

    Linux (4.7 and later) reports it in /proc/self/status. Elsewhere the only way is to set it
    and set it back (`os.umask` returns the old value); the umask is process-wide, so a file
    another thread creates in that instant would get mode 0666/0777. That window is a few
    microseconds and dltrain writes its files from one thread, so the fallback is accepted.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def shared_mode(fd: int) -> None:
    """Give the open file `fd` the mode that the umask implies for a new file (0644 under
    umask 022), as `open()` would have: tempfile.mkstemp creates its files 0600 whatever
    the umask, and a file renamed into place keeps that mode — a colleague sharing the
    folder could not read it."""
    if hasattr(os, "fchmod"):  # POSIX; on Windows the mode bits mean nothing here
        os.fchmod(fd, 0o666 & ~current_umask())


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through `write(file)` to a temporary file beside `path`, then rename it over `path`.

    The rename is atomic on POSIX and Windows, so `path` holds either the old or the new
    content, whatever happens in between. The file gets the mode the umask gives a new file
    (`shared_mode`), like any file a program creates.

    A write that fails for want of space raises NoSpaceError ("no space left on device on
    PATH (N MB free)"), the space counted once the temporary is gone, whatever layer reported
    it: torch.save turns the OSError of its file's write into a RuntimeError ("unexpected pos
    ...") with the OSError as its context.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as err:
        if out_of_space(err):
            raise no_space(path) from None
        raise
    try:
        shared_mode(fd)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, Exception) and out_of_space(err):
            raise no_space(path) from None
        raise


def no_space(path: Path) -> NoSpaceError:
    """The sentence of a write of `path` that found its device full, with what is free."""
    return NoSpaceError(f"no space left on device on {path} ({free_mb(path.parent)} MB free)")


def out_of_space(err: BaseException) -> bool:
    """Whether `err`, or an error it was raised from or while handling, is a full device."""
    seen: set[int] = set()
    at: BaseException | None = err
    while at is not None and id(at) not in seen:
        if isinstance(at, NoSpaceError) or (isinstance(at, OSError) and at.errno in _NO_SPACE):
            return True
        seen.add(id(at))
        at = at.__cause__ or at.__context__
    return False


def free_mb(folder: Path) -> int:
    """Megabytes free for this user on the device of `folder` (-1 where it cannot be told)."""
    try:
        return shutil.disk_usage(folder).free // 1_000_000
    except OSError:
        return -1


def remove_stale_temporaries(folder: Path, names: Iterable[str]) -> list[Path]:
    """Remove the temporaries of `names` (`.NAME.<random tag>.tmp`) that atomic_write left in
    `folder` when its process was killed mid-write (SIGKILL gives no chance to clean up); a
    checkpoint's are as large as the checkpoint. Only a process that owns `folder` may call
    this (a run holds its directory's lock): another's write in progress would be lost. Files
    of any other name are left alone. Returns what was removed."""
    pattern = re.compile(rf"\.(?:{'|'.join(re.escape(n) for n in names)})\.{_TEMP_TAG}\.tmp")
    removed = []
    if Path(folder).is_dir():
        for entry in Path(folder).iterdir():
            if pattern.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def write_json(path: Path, obj: Any) -> None:
    """`obj` as indented JSON, atomically."""
    data = (json.dumps(obj, indent=2, default=str) + "\n").encode()
    atomic_write(path, lambda f: f.write(data))


def safe_name(text: str, limit: int = NAME_LIMIT) -> str:
    """`text` as one file or directory name: characters that split paths or trouble shells and
    Windows become `_`; a name longer than `limit` is cut and ends with a hash of the whole text, so
    that two long names stay apart."""
    name = _UNSAFE.sub("_", text)
    if len(name) > limit:
        digest = hashlib.sha1(text.encode()).hexdigest()[:8]
        name = f"{name[:limit - 9]}~{digest}"
    return name
