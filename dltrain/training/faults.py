"""Fault injection, for tests that must kill or signal a run at a chosen moment without sleeping.

DLTRAIN_FAULT is read here alone (`named`), for two kinds of fault:

`DLTRAIN_FAULT=POINT[:STEP]` in the environment makes the process die at the named point
(`os._exit(137)`: no cleanup, no `finally`, as SIGKILL would leave it) the first time the
point is reached at training step STEP or later (any step without `:STEP`). Unset, it costs
one dictionary look-up. The points:

- `after-last-checkpoint`: right after checkpoints/last.pt is written, before best.pt
  (Checkpoints.write): the moment that leaves a stale best.pt beside a newer last.pt.

`DLTRAIN_FAULT=signal-at:POINT[:SIGNALS]` sends signals at a point of the command
(dltrain.training.signals.signal_at says which).
"""

from __future__ import annotations

import os

FAULT_ENV = "DLTRAIN_FAULT"
KILLED = 137  # the exit status of a process killed by SIGKILL


def named(first: str) -> list[str] | None:
    """The colon-separated parts after `first` where DLTRAIN_FAULT starts with it (an empty
    list where nothing follows), else None."""
    parts = os.environ.get(FAULT_ENV, "").split(":")
    return parts[1:] if parts[0] == first else None


def fault(point: str, step: int) -> None:
    """Die here if DLTRAIN_FAULT names `point` (and a step at or before `step`)."""
    rest = named(point)
    if rest is not None and step >= int(rest[0] if rest and rest[0] else 0):
        os._exit(KILLED)
