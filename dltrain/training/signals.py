"""SIGINT / SIGTERM: finish the current step, save, and stop — a second Ctrl-C stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class StopRequest:
    """A flag the training loop reads after every step; set by a signal (or by a test)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal: str | None = None

    def request(self, name: str = "request") -> None:
        self.requested = True
        self.signal = name

    @contextmanager
    def on_signals(self) -> Iterator[StopRequest]:
        """Turn SIGINT and SIGTERM into a stop request while the block runs.

        A second SIGINT raises KeyboardInterrupt at once, for a user who will not wait for
        the step and the checkpoint. Off the main thread (where Python cannot install signal
        handlers) the block runs unguarded.
        """
        if threading.current_thread() is not threading.main_thread():
            yield self
            return

        def handle(signum: int, _frame: FrameType | None) -> None:
            if self.requested and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.request(signal.Signals(signum).name)

        previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield self
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
