"""Pictures drawn outside the process's own work: the curves.png of a command's runs.

A drawing is interpreter work (matplotlib's import, 0.4-0.9 s on 2 shared CPU cores, then
0.1-0.4 s a picture), which a thread would take from the training and the run would wait
for. So:

- Painter: a second process that `dltrain`'s command line starts once its preflight has
  passed, before torch is imported (a fork of a small process with no threads yet: cheap and
  safe). It imports matplotlib and warms its fonts while the command reads its data, then
  draws each picture a run hands it (a copy of the points), while the run goes on; a run's
  end waits only for its last picture. If it fails or is gone, the run draws its picture
  itself. It ignores Ctrl-C and SIGTERM (the command decides how to stop) and dies with the
  command (Linux's parent-death signal), so no process outlives `dltrain`.
- Pictures: the curves.png of a vectorised stack's members, drawn together at the stack's end,
  half of them by a forked copy of the process.

Both on Linux only with more than one core; elsewhere pictures are drawn in the process.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from dltrain.io import atomic_write
from dltrain.log.curves import Canvas, CurvesLogger, History, curves_png

log = logging.getLogger("dltrain")
T = TypeVar("T")


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1


def _linux_with_cores() -> bool:
    # Linux only: elsewhere a forked copy of a process holding system frameworks may crash
    return sys.platform.startswith("linux") and _cores() > 1


def _fork_quietly(fork: Callable[[], T]) -> T:
    """fork() with Python's warning about forking a process with threads (>= 3.12) silenced:
    the copies made here touch none of the other threads' locks, only matplotlib and files."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return fork()


# -- Painter ------------------------------------------------------------------------------


def _painter_starts(parent: int) -> None:
    """In the painter process: ignore the signals that stop the command (the command stops
    its painter itself), and die with the command."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the command ended before the line above
        os._exit(0)


def _warm() -> None:
    """matplotlib imported and its fonts loaded, by drawing a picture nobody keeps."""
    history = History()
    history.add({"train/loss": 1.0, "train/lr": 0.1, "val/loss": 1.0, "val/accuracy": 0.5}, 1)
    curves_png(history, "val/accuracy", "warm")


def _paint(path: Path, history: History, monitor: str, title: str) -> None:
    png = curves_png(history, monitor, title)
    atomic_write(path, lambda f: f.write(png))


class Painter:
    """A process that draws pictures for this one (see the module's text)."""

    def __init__(self, executor: ProcessPoolExecutor) -> None:
        self._executor = executor

    @classmethod
    def start(cls) -> Painter | None:
        """The painter, forked now; None where there is none to have (not Linux, one core,
        or the fork failed)."""
        if not _linux_with_cores():
            return None
        import multiprocessing

        try:
            executor = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"),
                                           initializer=_painter_starts,
                                           initargs=(os.getpid(),))
            _fork_quietly(lambda: executor.submit(_warm))  # the process is forked here
        except (OSError, RuntimeError) as err:  # (RuntimeError: a broken process pool)
            log.debug(f"no painter process: {err}")
            return None
        return cls(executor)

    def paint(self, path: Path, history: History, monitor: str, title: str) -> Future:
        """Draw `history` (copied now: the run goes on adding points) into `path`."""
        points = History({tag: list(series) for tag, series in history.series.items()})
        return self._executor.submit(_paint, path, points, monitor, title)

    def close(self) -> None:
        """Stop the process; a picture it is drawing is written whole or not at all."""
        processes = list((getattr(self._executor, "_processes", None) or {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()  # (it ignores SIGTERM) it may be warming up still: no waiting
            process.join(5)


# -- Pictures -----------------------------------------------------------------------------


@dataclass
class Pictures:
    """curves.png of many runs drawn together, at the end of a vectorised stack: draw() asks
    each member's sink (CurvesLogger's `pictures`) for its picture and draws them all, one
    figure redrawn (Canvas). On Linux with more than one core, a forked copy of the process
    draws the second half meanwhile: a drawing is interpreter work (0.13 s on 2 CPU cores),
    and 32 members' pictures took longer than 32 members' training. The copy only draws and
    writes PNGs, then leaves with os._exit (none of the parent's exit handlers run twice);
    if it fails, this process draws its half again."""

    watched: list[CurvesLogger] = field(default_factory=list)

    def watch(self, sink: CurvesLogger) -> None:
        self.watched.append(sink)

    def draw(self) -> None:
        """Every watched sink's picture, written when this returns."""
        jobs = [job for job in (sink.hand_over() for sink in self.watched) if job is not None]
        half = len(jobs) // 2 if _can_fork(len(jobs)) else 0
        helper = _forked(_draw_all, jobs[half:]) if half else None
        mine = jobs[:half] if helper is not None else jobs
        started = time.monotonic()
        _draw_all(mine, warn=True)
        # the helper's share is drawn here after all if it failed, or if it takes far longer
        # than this half did (a copy of a process with threads could, in principle, hang)
        if helper is not None and _failed(helper, max(30.0, 10 * (time.monotonic() - started))):
            _draw_all(jobs[half:], warn=True)


_MIN_TO_FORK = 4  # pictures: below that a fork (a copy of the page tables) costs more


def _can_fork(pictures: int) -> bool:
    return _linux_with_cores() and pictures >= _MIN_TO_FORK


def _draw_all(jobs: list[tuple[Path, History, str, str]], warn: bool = False) -> bool:
    """Draw and write each picture on one canvas; whether every one was written."""
    canvas, ok = Canvas(), True
    for path, history, monitor, title in jobs:
        try:
            png = canvas.png(history, monitor, title)
            atomic_write(path, lambda f, png=png: f.write(png))
        except Exception as err:  # a picture is a view of the run, never a reason to lose it
            ok = False
            if warn:
                log.warning(f"no {path}: {type(err).__name__}: {err}")
    return ok


def _forked(draw: Callable[..., bool], jobs: list) -> int | None:
    """The pid of a forked copy that runs draw(jobs) and exits 0 if it drew them all; None
    where fork failed."""
    try:
        pid = _fork_quietly(os.fork)
    except OSError:
        return None
    if pid == 0:  # the copy
        code = 1
        try:
            code = 0 if draw(jobs) else 1
        finally:
            os._exit(code)
    return pid


def _failed(pid: int, timeout_s: float) -> bool:
    """Whether the forked copy `pid` failed: exited with other than 0, or is still drawing
    after `timeout_s` (it is then killed)."""
    deadline = time.monotonic() + timeout_s
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status != 0
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return True
        time.sleep(0.01)
