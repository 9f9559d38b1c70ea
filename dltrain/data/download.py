"""Downloading data files: canonical URLs, published checksums, atomic writes, a progress bar.

Reading local files is the main path; downloading is the convenience. A download leaves either
the complete file, whose checksum matches the published one, or nothing: the bytes go to a
temporary file beside the target, which is renamed over it only after the checksum matched.
A machine without network answers within seconds (`TIMEOUT` bounds the connection and every
stall), and the caller turns `Unreachable` into a message naming the files to put in place.
"""

from __future__ import annotations

import hashlib
import logging
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path
from typing import IO

from dltrain.errors import ConfigError
from dltrain.io import atomic_write

log = logging.getLogger("dltrain")

TIMEOUT = 10.0  # seconds to connect, and the longest a transfer may stall
_CHUNK = 1 << 16
_AGENT = "dltrain"  # some hosts refuse requests without a User-Agent


@dataclass(frozen=True)
class Remote:
    """A file to fetch: its local name, the URLs to try in order, its published checksum.

    `checksum` is "md5:HEX" or "sha256:HEX", as the data set's authors publish it.
    """

    name: str
    urls: tuple[str, ...]
    checksum: str

    def sources(self, mirror: str | None) -> tuple[str, ...]:
        """The URLs to try: the mirror's copy of `name` alone when a mirror is given."""
        return (f"{mirror.rstrip('/')}/{self.name}",) if mirror else self.urls


class Unreachable(Exception):
    """No URL of a file answered (no network, a firewall, a dead host); the reason is the text."""


class _ChecksumMismatch(Exception):
    pass


def _copy(response: IO[bytes], out: IO[bytes], remote: Remote, url: str, total: int | None
          ) -> None:
    """Stream `response` into `out`, hashing as it goes, with a progress bar on stderr."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    algorithm, expected = remote.checksum.split(":", 1)
    digest = hashlib.new(algorithm)
    received = 0
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), DownloadColumn(),
               TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        task = progress.add_task(remote.name, total=total)
        while chunk := response.read(_CHUNK):
            digest.update(chunk)
            out.write(chunk)
            received += len(chunk)
            progress.update(task, advance=len(chunk))
    if total is not None and received != total:
        raise Unreachable(f"{url}: the transfer stopped after {received:,} of {total:,} bytes")
    if digest.hexdigest() != expected:
        raise _ChecksumMismatch(f"{url} sent a file whose {algorithm} is {digest.hexdigest()}, "
                                f"not the published {expected}")


def fetch(remote: Remote, folder: Path, mirror: str | None = None,
          timeout: float = TIMEOUT) -> Path:
    """Download `remote` into `folder` (atomically), trying its URLs in turn; return the path.

    Raises Unreachable when no URL answered, ConfigError when a file arrived with the wrong
    checksum (nothing is kept then).
    """
    target = Path(folder) / remote.name
    failures: list[str] = []
    mismatch: str | None = None
    for url in remote.sources(mirror):
        log.info(f"downloading {url} -> {target}")
        request = urllib.request.Request(url, headers={"User-Agent": _AGENT})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                atomic_write(target, lambda out, r=response, u=url, t=total:
                             _copy(r, out, remote, u, t))
            return target
        except _ChecksumMismatch as err:
            mismatch = str(err)
        except Unreachable as err:
            failures.append(str(err))
        except (urllib.error.URLError, HTTPException, TimeoutError, OSError) as err:
            reason = getattr(err, "reason", None) or err
            failures.append(f"{url}: {reason}")
    if mismatch:
        raise ConfigError(f"The download of {remote.name} is corrupt and was not kept: "
                          f"{mismatch}.")
    raise Unreachable("; ".join(failures))


def obtain(remotes: Sequence[Remote], folder: Path, *, what: str, download: bool,
           mirror: str | None = None, files: str | None = None, elsewhere: str = "",
           timeout: float = TIMEOUT) -> None:
    """Download the missing `remotes` into `folder`, or say exactly what to put where.

    `what` names the data set ("data=mnist"), `files` describes the files when their names
    alone do not ("X, Y (gzipped or not)"), `elsewhere` the other places they may be. Without
    network (or with `download` off) this raises one ConfigError naming the folder and files.
    """
    folder = Path(folder).resolve()
    files = files or ", ".join(r.name for r in remotes)
    need = f"{what} needs {files} in {folder}{elsewhere}"
    them, the_files = ("them", "the files") if len(remotes) > 1 else ("it", "the file")
    advice = f"put {the_files} there, or set data.root to the folder that holds {them}"
    if not download:
        raise ConfigError(f"{need}; downloading is off (data.download=false): {advice}.")
    for remote in remotes:
        try:
            fetch(remote, folder, mirror, timeout)
        except Unreachable as err:
            raise ConfigError(f"{need}, and downloading {them} failed ({err}): {advice}.") \
                from None

