"""Files: atomic writes (a reader, or a crash, never sees a half-written file) and safe names."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

NAME_LIMIT = 120  # characters of a name made by safe_name
_UNSAFE = re.compile(r"[^\w.,=+\-\[\]{}@%~]")  # path separators, quotes, spaces, ':' and the like


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
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        shared_mode(fd)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
