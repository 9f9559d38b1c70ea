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


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write through `write(file)` to a temporary file beside `path`, then rename it over `path`.

    The rename is atomic on POSIX and Windows, so `path` holds either the old or the new
    content, whatever happens in between.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
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
