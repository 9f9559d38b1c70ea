"""fit() and evaluate(): the training loop, readable top to bottom.

fit() takes the step function that dltrain.training.steps picks for the run (plain,
accumulating, L-BFGS, skip-non-finite) and asks dltrain.training.decisions what each point of
training means (epoch end, validation due, best, early stop), as the vectorised stack does.

The step loop does no host synchronisation: per-step losses stay on the device in a short
list and are read once every `log_every` steps (and at the end of each epoch), which is also
where a non-finite loss is caught. Checkpoints are written only after such a read has shown
every loss since the last one to be finite, so `last.pt` is always a good state.

(`trainer.nan_policy=skip` is the one exception: it must look at every step's loss before the
optimiser applies it, so it syncs once per step.)
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from dltrain.data.batches import sequential_batches
from dltrain.data.spec import Split, TargetScale
from dltrain.errors import DivergedError
from dltrain.log import Logger
from dltrain.losses import MetricTotals
from dltrain.optim import steps_per_batch
from dltrain.training.decisions import (
    divergence,
    end_epoch,
    finished,
    judge,
    val_record,
    validation_due,
)
from dltrain.training.decisions import first_nonfinite as first_nonfinite_loss
from dltrain.training.distributed import SINGLE, Dist
from dltrain.training.hooks import NO_HOOKS, Hooks
from dltrain.training.signals import StopRequest
from dltrain.training.state import Job, Parts, TrainState
from dltrain.training.steps import autocast, micro_batches, pick_step


@torch.inference_mode()
def evaluate(parts: Parts, split: Split, task: str, batch_size: int,
             amp: contextlib.AbstractContextManager, d: Dist = SINGLE,
             scale: TargetScale | None = None) -> dict[str, float]:
    """Mean loss and the task's metrics over `split`, in eval mode (one host sync).

    In a data-parallel job each rank scores its shard and the totals are summed. `scale`
    (Data.target_scale) puts regression metrics back in the data's own units. A task that
    scores what the model makes (generation: Parts.scorer) is scored by its scorer instead.
    """
    if parts.scorer is not None:
        return parts.scorer(split)
    was_training = parts.model.training
    parts.model.eval()
    forward = parts.eval_forward or parts.forward
    if d.active:
        split = Split(split.x[d.rank::d.world], split.y[d.rank::d.world])
    loss_fn = parts.criterion
    totals = MetricTotals(task, scale=scale)
    for x, y in sequential_batches(split, batch_size):
        with amp:
            out = forward(x)
            loss = loss_fn(out, y, x)
        totals.update(out, y, loss)
    parts.model.train(was_training)
    return totals.compute(reduce=d.sum if d.active else None,
                          reduce_max=d.max if d.active else None)


def first_nonfinite_layer(model: nn.Module, x: torch.Tensor) -> str | None:
    """The first layer (in forward order) whose output, or else whose gradient, is not finite."""
    found: list[str] = []

    def hook(name: str) -> Callable[..., None]:
        def check(_module: nn.Module, _inputs: Any, out: Any) -> None:
            if isinstance(out, torch.Tensor) and not found and not torch.isfinite(out).all():
                found.append(f"{name} (output)")
        return check

    handles = [m.register_forward_hook(hook(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    for name, p in model.named_parameters():
        if not found and p.grad is not None and not torch.isfinite(p.grad).all():
            found.append(f"{name} (gradient)")
    return found[0] if found else None


class Window:
    """Per-step losses since the last log point, kept on the device until read.

    Its clock runs from the previous read, so the time spent logging counts against the
    throughput it reports (validation, between epochs, does not). A vectorised stack keeps
    one for all its members ((members,) losses) and reads it member by member.
    """

    def __init__(self, started: float | None = None) -> None:
        self.losses: list[torch.Tensor] = []
        self.samples = 0
        self.started = time.perf_counter() if started is None else started
        self.read_at = self.started

    def read(self, state: TrainState, d: Dist) -> tuple[list[float], float]:
        """(the per-step losses, samples/s) of the window, counted into `state`.

        Losses are averaged over the ranks of a data-parallel job; samples/s is this rank's.
        """
        values = d.mean(torch.stack(self.losses)).tolist()  # the host sync of this log point
        self.read_at = time.perf_counter()
        elapsed = self.read_at - self.started
        state.train_s += elapsed
        state.samples += self.samples
        return values, self.samples / max(elapsed, 1e-9)


def log_window(window: Window, state: TrainState, parts: Parts, logger: Logger,
               x: torch.Tensor, d: Dist) -> Window:
    """Read the window's losses (the host sync of a log point), log them, start a new one.
    A non-finite loss ends the run, naming the first layer that went wrong on `x`."""
    if window.losses:
        values, rate = window.read(state, d)
        bad = first_nonfinite_loss(values, state.step)
        if bad is not None:
            raise DivergedError(divergence(*bad, first_nonfinite_layer(parts.model, x)))
        assert parts.optimizer is not None
        logger.log_metrics({"train/loss": sum(values) / len(values),
                            "train/lr": parts.optimizer.param_groups[0]["lr"],
                            "perf/samples_per_s": rate}, state.step)
    return Window(started=window.read_at)


def fit(job: Job, state: TrainState, logger: Logger, save: Callable[[TrainState, bool], None],
        stop: StopRequest, d: Dist = SINGLE, hooks: Hooks = NO_HOOKS) -> str:
    """Train `job` from `state` until max_epochs / max_steps, early stopping or a stop request.

    Validates every `val_every` epochs and at the end; after each validation calls
    `save(state, is_best)`. Returns "completed" or "interrupted"; raises DivergedError.

    In a data-parallel job (`d.active`) every rank takes the same decisions at the same step:
    losses and metrics are reduced over the ranks, and a stop request is honoured at the next
    log point, where the ranks agree on it (a rank that stopped alone would leave the others
    waiting in their next gradient exchange).
    """
    parts, settings, device = job.parts, job.settings, job.device
    model, scheduler = parts.model, parts.scheduler
    assert parts.optimizer is not None
    k = settings.accumulate  # micro-batches per optimiser step
    used = len(job.batches) // k * k  # an epoch's batches that make whole steps
    if used == 0:
        raise DivergedError(f"An epoch has {len(job.batches)} batches, fewer than "
                            f"trainer.accumulate={k}: no optimiser step could be taken")
    step = pick_step(parts, settings, device, d)
    step_schedule = scheduler is not None and steps_per_batch(scheduler)
    max_steps = settings.max_steps or math.inf
    amp = autocast(device, settings.precision)

    if state.step == 0:
        hooks.start(state)  # the network at its initialisation
    # The window of training losses runs across epochs: it is read every log_every steps
    # and before a validation, a stop or the end, not at every epoch's end (a full-batch run
    # has one step an epoch, and would log every step).
    window, last_x = Window(), None
    while not finished(state, settings):
        model.train()
        if not window.losses:  # nothing pending: its clock starts here, after a validation
            window = Window()
        x = None
        for micro in micro_batches(job.batches.epoch(state.epoch, start=state.batch), k):
            loss = step(micro)
            x = micro[-1][0]
            state.batch += k
            window.samples += x.shape[0] * k
            if loss is None:  # nan_policy=skip refused this step
                state.skipped += 1
            else:
                if step_schedule:
                    scheduler.step()
                window.losses.append(loss)
                state.step += 1
                hooks.step(state)
                if state.step % settings.log_every == 0:
                    window = log_window(window, state, parts, logger, x, d)
                    if d.any(stop.requested, device):  # ranks agree where they all are
                        break
            if (stop.requested and not d.active) or state.step >= max_steps or state.batch >= used:
                break
        last_x = x if x is not None else last_x
        end_epoch(state, used)
        stopping = d.any(stop.requested, device)
        validating = validation_due(state, settings)
        if (stopping or validating) and last_x is not None:
            window = log_window(window, state, parts, logger, last_x, d)
        # a stop at the budget's last step is not an interruption: nothing is left to train,
        # so the final validation runs and the run completes (stopped there, it could never
        # be resumed, its budget being spent, nor validated and tested)
        if stopping and not finished(state, settings):
            stop.requested = True
            save(state, False)
            return "interrupted"
        if validating:
            metrics = evaluate(parts, job.data.val, job.spec.task, settings.eval_batch_size,
                               amp, d, job.data.target_scale)
            logger.log_metrics(val_record(state, metrics, used), state.step)
            if scheduler is not None and not step_schedule:
                scheduler.step(metrics["loss"])  # plateau: on the validation loss
            verdict = judge(state, metrics, settings)
            save(state, verdict.is_best)
            hooks.validated(state, metrics)
            if verdict.stop_early:
                break
    hooks.end(state)
    return "completed"
