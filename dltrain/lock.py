"""RUN_DIR/.lock: one process writes into a run directory at a time.

The lock is `fcntl.flock` on RUN_DIR/.lock, which holds the holder's pid and host for the
sentence of the process that is refused. flock rather than a file created with O_EXCL: the
kernel releases it on any exit of its holder — SIGKILL, an out-of-memory kill, a crash — so a
lock left by a dead process is never mistaken for a live one and needs no guessing from pids
(which the next process may reuse) and no clean-up before it is taken over. The file itself
is removed when the lock is released; one that a killed process left behind is simply locked
again by the next. On NFS, Linux maps flock to the server's byte-range locks, which the
server frees when a dead client's lease ends.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from dltrain.errors import ConfigError

try:  # POSIX; on Windows there is no flock: the file is written, but nothing is enforced
    import fcntl
except ImportError:  # pragma: no cover - not on the machines the tests run on
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"
# A probe (held_by) holds a shared lock for microseconds: a taker that meets one tries again
# for this long before it says the directory is in use.
PATIENCE_S = 0.25


@dataclass(frozen=True)
class RunLock:
    """A held lock: its file and the open descriptor that holds it."""

    path: Path
    fd: int

    def release(self) -> None:
        """Remove the file, then let go: a process that opened the file before it was
        removed gets a lock on a file no longer in the directory, sees it, and tries again."""
        with contextlib.suppress(FileNotFoundError):  # the directory went under the run
            os.unlink(self.path)
        os.close(self.fd)

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.release()


def _holder(fd: int) -> str:
    """'process PID on HOST' from a lock file's content, as far as it was written."""
    try:
        os.lseek(fd, 0, os.SEEK_SET)  # (os.pread is POSIX only)
        text = os.read(fd, 256).decode("utf-8", "replace").split()
    except OSError:
        text = []
    if len(text) >= 2 and text[0].isdigit():
        return f"process {text[0]} on {text[1]}"
    return "another process"


def _in_use(run_dir: Path, who: str) -> ConfigError:
    return ConfigError(f"{run_dir} is in use by {who} (its lock {run_dir / LOCK_FILE}): "
                       "wait until it ends, or write this run to another directory.")


def take(run_dir: Path | str) -> RunLock:
    """Lock `run_dir` (an existing directory) for this process, or raise ConfigError naming the
    process that holds it. Release with `release()` or as a context manager."""
    run_dir = Path(run_dir)
    path = run_dir / LOCK_FILE
    deadline = time.monotonic() + PATIENCE_S
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ConfigError(f"Cannot write the lock {path}: {err.strerror}; the run directory "
                              "must be writable.") from None
        try:
            if fcntl is not None:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                os.close(fd)
                raise
            if time.monotonic() < deadline:
                os.close(fd)
                time.sleep(0.01)
                continue
            refusal = _in_use(run_dir, _holder(fd))
            os.close(fd)
            raise refusal from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if not same:  # the holder released (and removed) it between our open and our lock
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
        return RunLock(path, fd)


def held_by(run_dir: Path | str) -> str | None:
    """Whether another process holds `run_dir`'s lock, without taking it: 'process PID on
    HOST', or None. A check made before anything is written (the command's preflight); the
    lock itself is taken by the run."""
    path = Path(run_dir) / LOCK_FILE
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # no lock file (or none readable): nobody holds it
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return _holder(fd)
    finally:
        os.close(fd)  # closing lets go of the shared lock, if it was granted
    return None


def check_free(run_dir: Path | str) -> None:
    """Raise ConfigError if another process holds `run_dir`'s lock."""
    who = held_by(run_dir)
    if who is not None:
        raise _in_use(Path(run_dir), who)
