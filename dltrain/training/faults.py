"""Fault injection, for tests that must kill a run at a chosen moment without sleeping.

`DLTRAIN_FAULT=POINT[:STEP]` in the environment makes the process die at the named point
(`os._exit(137)`: no cleanup, no `finally`, as SIGKILL would leave it) the first time the
point is reached at training step STEP or later (any step without `:STEP`). Unset, it costs
one dictionary look-up. The points:

- `after-last-checkpoint`: right after checkpoints/last.pt is written, before best.pt
  (Checkpoints.write): the moment that leaves a stale best.pt beside a newer last.pt.
"""

from __future__ import annotations

import os

FAULT_ENV = "DLTRAIN_FAULT"
KILLED = 137  # the exit status of a process killed by SIGKILL


def fault(point: str, step: int) -> None:
    """Die here if DLTRAIN_FAULT names `point` (and a step at or before `step`)."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, at = wanted.partition(":")
    if name == point and step >= int(at or 0):
        os._exit(KILLED)
