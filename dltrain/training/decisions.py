"""What the points of training mean, decided in one place for a run (`fit`) and for every
member of a vectorised stack: when an epoch ends, when a validation is due, what a
validation's result means (a new best, early stopping), and how a divergence is told."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dltrain.training.state import Settings, TrainState


def end_epoch(state: TrainState, batches_per_epoch: int) -> None:
    """Start the next epoch once this one's batches are consumed (micro-batches that cannot
    fill a whole optimiser step are left out: `batches_per_epoch` counts the ones used)."""
    if state.batch >= batches_per_epoch:
        state.epoch += 1
        state.batch = 0


def finished(state: TrainState, settings: Settings) -> bool:
    """The budget is spent: max_epochs, or max_steps."""
    return state.epoch >= settings.max_epochs or (
        settings.max_steps is not None and state.step >= settings.max_steps)


def validation_due(state: TrainState, settings: Settings) -> bool:
    """At the end of training, and at the end of every `val_every`-th epoch."""
    return finished(state, settings) or (
        state.batch == 0 and state.epoch % settings.val_every == 0)


def val_record(state: TrainState, metrics: Mapping[str, float], batches_per_epoch: int
               ) -> dict[str, Any]:
    """What a validation logs: the (fractional, if cut short) epoch and the val/ metrics."""
    epoch = state.epoch + state.batch / batches_per_epoch
    return {"epoch": round(epoch, 3), **{f"val/{name}": v for name, v in metrics.items()}}


@dataclass(frozen=True)
class Verdict:
    """What one validation means for a run."""

    is_best: bool  # the monitored metric improved: best.pt is written
    stop_early: bool  # patience ran out: training ends here, completed


def judge(state: TrainState, metrics: Mapping[str, float], settings: Settings) -> Verdict:
    """Record a validation's `metrics` in `state` and say what it means."""
    state.last_val = dict(metrics)
    value = metrics[settings.monitor.split("/", 1)[1]]
    is_best = state.improved(value, settings.mode)
    if is_best:
        state.best_value, state.best_step, state.best_val = value, state.step, dict(metrics)
    stop_early = state.note_progress(value, settings)
    if stop_early:
        state.stopped_early = True
    return Verdict(is_best, stop_early)


def first_nonfinite(values: Sequence[float], last_step: int) -> tuple[int, float] | None:
    """(step, value) of the first non-finite loss among the per-step `values` that ended at
    `last_step`, or None when all are finite."""
    bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
    if bad is None:
        return None
    return last_step - len(values) + bad + 1, values[bad]


def divergence(step: int, value: float, where: str | None = None) -> str:
    """The sentence of a run that diverged: the step, and the first layer that went wrong."""
    return (f"The training loss became {value} at step {step}"
            f"{f'; first non-finite: {where}' if where else ''}.")
