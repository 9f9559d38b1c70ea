"""Where a run may be written: never over another run's work, never into the current folder by
accident, never into a folder that cannot be written. Torch-free, so that the command's
preflight checks Hydra's output folder before Hydra creates it or writes its .hydra/ there,
and `run()` checks the rest (checkpoints/, tb/) before anything trains."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from dltrain.errors import ConfigError


def run_marks(path: Path | str) -> list[str]:
    """What shows that `path` holds a run that got as far as training: its checkpoints, its
    metrics, its TensorBoard events, or a summary.json of a run that took steps. A summary of
    a run refused before its first step (bad data, say) is no work to lose: a new run may
    take the directory over, as the user who fixed the data expects."""
    path = Path(path)
    if not path.is_dir():
        return []
    marks = [f"{name}/" for name in ("checkpoints", "tb")
             if (path / name).is_dir() and any((path / name).iterdir())]
    if (path / "metrics.jsonl").exists():
        marks.append("metrics.jsonl")
    summary = path / "summary.json"
    if summary.exists():
        try:
            trained = bool(json.loads(summary.read_text()).get("steps"))
        except (OSError, ValueError, AttributeError):  # unreadable: assume it is a run's
            trained = True
        if trained:
            marks.append("summary.json")
    return marks


def check_new_run(path: Path | str, continuing: bool) -> None:
    """Refuse a new run into a directory that holds a run: it would replace its checkpoints
    and summary and add to its metrics. `continuing`: a resume, or trainer.resume=auto (a
    resubmitted job continues its own directory: that is what it is for)."""
    if continuing:
        return
    marks = run_marks(path)
    if marks:
        raise ConfigError(f"{path} already holds a run ({', '.join(marks)}): continue it with "
                          f"dltrain resume {path}, or write the new run to another directory.")


def check_not_empty(value: object, key: str) -> None:
    """Refuse `key=` (empty): Hydra would write the run into the current folder."""
    if not str(value).strip():
        raise ConfigError(f"{key} is empty, which would write into the current folder: give it "
                          f"a directory, or leave {key} out for a new one under outputs/.")


def _probe(folder: Path) -> str | None:
    """Why nothing can be created in `folder` (an existing directory), or None. A file is
    created and removed: permission bits do not tell it all (root writes anywhere but /proc,
    /sys or a read-only mount)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return "permission denied"
    try:
        fd, name = tempfile.mkstemp(prefix=".dltrain-write-test-", dir=folder)
    except OSError as err:
        return (err.strerror or type(err).__name__).lower()
    os.close(fd)
    os.unlink(name)
    return None


def check_writable(path: Path | str, what: str = "The run directory") -> None:
    """Refuse a directory that cannot be created or written: `path` if it exists, else the
    nearest folder above it that does (where it would be created)."""
    path = Path(path)
    here = Path(os.path.abspath(path))
    while not here.exists() and here.parent != here:
        here = here.parent
    if not here.is_dir():
        raise ConfigError(f"{what} {path} cannot be created: {here} is a file, not a folder.")
    why = _probe(here)
    if why is not None:
        where = "" if here == Path(os.path.abspath(path)) else f" (in {here})"
        raise ConfigError(f"{what} {path} cannot be written{where}: {why}.")
