"""SIGINT / SIGTERM at every moment of a command: a signal ends in exit 130 and, once the run
directory is known, in a summary.json with status interrupted — never a traceback, never an
exit code that contradicts the summary.

One StopRequest serves the whole command. `dltrain`'s main() installs its handlers at its
first instruction (`install`), and what a signal does depends on where the command is:

- before a run (imports, composing the config, Hydra's set-up): nothing would read a flag, so
  the signal stops the command at once (KeyboardInterrupt, which main() turns into exit 130);
- inside a run (`on_signals`: from TrainTask's first instruction, or run()'s, until its
  summary.json is written): the first signal is a request, read between the phases before
  training (`check`) and after every step. A second SIGINT stops at once, for a user who will
  not wait for the step and the checkpoint, but only inside `at_once` (the part of a run
  whose Record writes that end down: run.py's `record.ending`); there, whatever the
  interrupted code raises — torch.save wraps the KeyboardInterrupt in a RuntimeError — is
  the interrupt, and the run ends interrupted, not failed. Elsewhere in a run (the task's
  imports, claiming the directory, writing the summary) it is a request like the first.
  A signal once training is over (the final validation, the test) lets the run complete
  (run.py says why);
- once a run's block has ended, and once main() has chosen its exit code (`settle`), a
  signal is only noted: a late signal must not make the exit code contradict summary.json.
  A sweep's next job reads the note at its start and stops there.

Python calls signal handlers on the main thread only; off it (a launcher's worker thread) the
blocks run unguarded. A StopRequest holds plain values (no handler), so a Hydra task holding
one can be pickled to a launcher's workers.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

from dltrain.training.faults import named

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """A stop requested before training began, found between the phases of a run (before
    and after the data, after the build): nothing to save, and the run ends interrupted."""


class StopRequest:
    """A flag the training loop reads after every step; set by a signal (or by a test)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None
        self.forced = False  # the handler stopped the code at once (KeyboardInterrupt)
        self._depth = 0  # open on_signals blocks: while > 0, a loop reads the flag
        self._second_stops = False  # whether a second SIGINT stops at once here
        self._settled = False  # outside any block, a run's end is written: only noted

    def request(self, name: str = "request") -> None:
        self.requested = True
        self.signal = name

    def check(self, agreed: bool | None = None) -> None:
        """Raise Stopped if a stop was requested (`agreed`: the ranks of a data-parallel job
        agreed on it, Dist.any, so that they all stop at the same phase)."""
        if self.requested if agreed is None else agreed:
            self.requested = True
            raise Stopped(self.signal or "request")

    def settle(self) -> None:
        """The command's exit code is chosen: from here a signal outside a run is only noted."""
        self._settled = True

    @classmethod
    def current(cls) -> StopRequest:
        """The StopRequest whose handlers are installed — the one `dltrain`'s main() installs
        for the whole command, reached by a verb that does not hand it on (`dltrain resume`) —
        or a new one (a run called from Python: tests, a notebook)."""
        owner = getattr(signal.getsignal(signal.SIGINT), "__self__", None)
        return owner if isinstance(owner, cls) else cls()

    def install(self) -> dict[int, Any]:
        """Handle SIGINT and SIGTERM from now on (main thread only); the previous handlers."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, self._on_signal) for s in SIGNALS}

    @staticmethod
    def restore(previous: dict[int, Any]) -> None:
        for s, handler in previous.items():
            signal.signal(s, handler)

    def installed(self) -> bool:
        return signal.getsignal(signal.SIGINT) == self._on_signal

    @contextmanager
    def on_signals(self, second_stops: bool = True) -> Iterator[StopRequest]:
        """Turn SIGINT and SIGTERM into a stop request while the block (a run) runs.

        Installs the handlers unless they are this request's already (main()'s), and restores
        the previous ones afterwards. With `second_stops`, a second SIGINT raises
        KeyboardInterrupt at once; without, only inside an `at_once` block (where a Record
        writes that end down): elsewhere the run, a moment later, stops at its next check.
        When the outermost block ends, the run's end is written, and a later signal outside
        a run is only noted.
        """
        previous = {} if self.installed() else self.install()
        outer = self._second_stops
        self._second_stops = second_stops
        self._depth += 1
        try:
            yield self
        finally:
            self._depth -= 1
            self._second_stops = outer
            self._settled = self._settled or self._depth == 0
            self.restore(previous)

    @contextmanager
    def at_once(self) -> Iterator[None]:
        """A block that a second SIGINT stops at once (KeyboardInterrupt); after such a forced
        stop, whatever the block raises is that KeyboardInterrupt: code interrupted at once may
        fail in its own way on the way out (torch.save's writer turns it into "RuntimeError:
        unexpected pos ..."), and the run must end interrupted, not failed with a traceback.
        (atomic_write has kept the previous checkpoint.)"""
        outer = self._second_stops
        self._second_stops = True
        try:
            yield
        except Exception as err:
            if not self.forced:
                raise
            raise KeyboardInterrupt(f"stopped at once by {self.signal}") from err
        finally:
            self._second_stops = outer

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        second = self.requested and signum == signal.SIGINT
        self.request(signal.Signals(signum).name)
        before_a_run = self._depth == 0 and not self._settled  # nothing would read the flag
        if before_a_run or (self._depth > 0 and self._second_stops and second):
            self.forced = True
            raise KeyboardInterrupt


def signal_at(point: str) -> None:
    """Deliver the signals that DLTRAIN_FAULT names for `point` to this process, at once:
    `signal-at:POINT` sends SIGTERM, `signal-at:POINT:SIGINT+SIGINT` two SIGINTs. A test's
    way to time a signal to a moment without sleeping; unset, it costs a dictionary look-up.

    The points: `start` (main's first instruction, the handlers just installed), `preflight`
    (the config composed and checked, Hydra's app not yet run), `task` (Hydra's job has
    created the run directory; the run has not begun), `ended` (the run's summary.json is
    written and its exit code chosen; Hydra's job not yet over).
    """
    rest = named("signal-at")  # [POINT, SIGNALS]
    if not rest or rest[0] != point:
        return
    names = rest[1] if len(rest) > 1 and rest[1] else "SIGTERM"
    for each in names.split("+"):
        signal.raise_signal(signal.Signals[each])  # its handler runs before this returns
