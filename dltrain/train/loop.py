"""fit() and evaluate(): the training loop, readable top to bottom.

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

from dltrain.data.batches import ShuffledBatches, sequential_batches
from dltrain.data.spec import Split
from dltrain.errors import DivergedError
from dltrain.log import Logger
from dltrain.losses import MetricTotals
from dltrain.optim import penalised_weights, steps_per_batch
from dltrain.train.distributed import SINGLE, Dist
from dltrain.train.hooks import NO_HOOKS, Hooks
from dltrain.train.signals import StopRequest
from dltrain.train.state import Parts, Settings, TrainState

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass and the loss; a no-op at 32 bits."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


@torch.inference_mode()
def evaluate(parts: Parts, split: Split, task: str, batch_size: int,
             amp: contextlib.AbstractContextManager, d: Dist = SINGLE) -> dict[str, float]:
    """Mean loss and the task's metrics over `split`, in eval mode (one host sync).

    In a data-parallel job each rank scores its shard and the totals are summed.
    """
    was_training = parts.model.training
    parts.model.eval()
    forward = parts.eval_forward or parts.forward
    if d.active:
        split = Split(split.x[d.rank::d.world], split.y[d.rank::d.world])
    totals = MetricTotals(task)
    for x, y in sequential_batches(split, batch_size):
        with amp:
            out = forward(x)
            loss = parts.loss(out, y)
        totals.update(out, y, loss)
    parts.model.train(was_training)
    return totals.compute(reduce=d.sum if d.active else None)


def first_nonfinite(model: nn.Module, x: torch.Tensor) -> str | None:
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

    def read(self, state: TrainState, d: Dist) -> tuple[float, float]:
        """(mean loss, samples/s) of the window; raises DivergedError on a non-finite loss.

        Losses are averaged over the ranks of a data-parallel job; samples/s is this rank's.
        """
        values = d.mean(torch.stack(self.losses)).tolist()  # the host sync of this log point
        self.read_at = time.perf_counter()
        elapsed = self.read_at - self.started
        state.train_s += elapsed
        state.samples += self.samples
        bad = next((i for i, v in enumerate(values) if not math.isfinite(v)), None)
        if bad is not None:
            step = state.step - len(values) + bad + 1
            raise DivergedError(f"The training loss became {values[bad]} at step {step}")
        return sum(values) / len(values), self.samples / max(elapsed, 1e-9)


def fit(parts: Parts, batches: ShuffledBatches, val: Split, task: str, settings: Settings,
        state: TrainState, logger: Logger, save: Callable[[TrainState, bool], None],
        stop: StopRequest, device: torch.device, d: Dist = SINGLE, hooks: Hooks = NO_HOOKS
        ) -> str:
    """Train from `state` until max_epochs / max_steps, early stopping or a stop request.

    Validates every `val_every` epochs and at the end; after each validation calls
    `save(state, is_best)`. Returns "completed" or "interrupted"; raises DivergedError.

    In a data-parallel job (`d.active`) every rank takes the same decisions at the same step:
    losses and metrics are reduced over the ranks, and a stop request is honoured at the next
    log point, where the ranks agree on it (a rank that stopped alone would leave the others
    waiting in their next gradient exchange).
    """
    model, optimizer, scheduler = parts.model, parts.optimizer, parts.scheduler
    scaler = parts.scaler
    params = [p for p in model.parameters() if p.requires_grad]
    weights = penalised_weights(model) if parts.penalties else []
    amp = autocast(device, settings.precision)
    max_steps = settings.max_steps or math.inf
    k = settings.accumulate  # micro-batches per optimiser step
    steps_per_epoch = len(batches) // k
    lbfgs = isinstance(optimizer, torch.optim.LBFGS)
    step_schedule = steps_per_batch(scheduler)
    metric = settings.monitor.split("/", 1)[1]

    def batch_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with amp:
            loss = parts.loss(parts.forward(x), y)
            for penalty in parts.penalties:
                loss = loss + penalty(weights)
        return loss

    # DDP exchanges gradients in every backward pass; of a step's micro-batches only the last
    # needs to (the others accumulate locally), which cuts the exchanges k-fold.
    no_sync = getattr(parts.forward, "no_sync", None) if d.active and k > 1 else None

    def exchange(micro_batch: int) -> contextlib.AbstractContextManager[Any]:
        last = (micro_batch + 1) % k == 0
        return contextlib.nullcontext() if no_sync is None or last else no_sync()

    def log_window(window: Window, x: torch.Tensor) -> Window:
        if window.losses:
            try:
                loss, rate = window.read(state, d)
            except DivergedError as err:
                where = first_nonfinite(model, x)
                raise DivergedError(f"{err}{f'; first non-finite: {where}' if where else ''}.") \
                    from None
            logger.log_metrics({"train/loss": loss, "train/lr": optimizer.param_groups[0]["lr"],
                                "perf/samples_per_s": rate}, state.step)
        return Window(started=window.read_at)

    def optimiser_step(step_loss: torch.Tensor) -> bool:
        """Apply the accumulated gradient; False if nan_policy=skip refused it."""
        if scaler is not None:
            scaler.unscale_(optimizer)
        if settings.nan_policy == "skip":
            norm = torch.nn.utils.clip_grad_norm_(params, math.inf, foreach=True)
            finite = bool(torch.isfinite(step_loss) & torch.isfinite(norm))  # a host sync
            if d.any(not finite, device):
                state.skipped += 1
                if scaler is not None:
                    scaler.update()
                return False
        if settings.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, settings.clip_norm, foreach=True)
        elif settings.clip_value is not None:
            torch.nn.utils.clip_grad_value_(params, settings.clip_value, foreach=True)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        return True

    if steps_per_epoch == 0:
        raise DivergedError(f"An epoch has {len(batches)} batches, fewer than "
                            f"trainer.accumulate={k}: no optimiser step could be taken")
    optimizer.zero_grad(set_to_none=True)
    if state.step == 0:
        hooks.start(state)  # the network at its initialisation
    # The window of training losses runs across epochs: it is read every log_every steps
    # and before a validation, a stop or the end, not at every epoch's end (a full-batch run
    # has one step an epoch, and would log every step).
    window, last_x = Window(), None
    while state.epoch < settings.max_epochs and state.step < max_steps:
        model.train()
        if not window.losses:  # nothing pending: its clock starts here, after a validation
            window = Window()
        x = None
        step_loss = torch.zeros((), device=device)
        for x, y in batches.epoch(state.epoch, start=state.batch):
            if lbfgs:  # re-evaluates the loss as often as its line search asks
                def closure(x: torch.Tensor = x, y: torch.Tensor = y) -> torch.Tensor:
                    optimizer.zero_grad(set_to_none=True)
                    loss = batch_loss(x, y)
                    loss.backward()
                    # Under DDP the line search must see the global batch's loss, as it sees
                    # its averaged gradient: on its own shard's loss each process would search
                    # its own way and their gradient exchanges would fall out of step.
                    return d.mean(loss.detach()) if d.active else loss

                step_loss = optimizer.step(closure).detach()
                state.batch += 1
                window.samples += x.shape[0]
                took_step = True
            else:
                if state.batch % k == 0:  # a new step: clear the last one's gradient
                    optimizer.zero_grad(set_to_none=True)
                with exchange(state.batch):
                    loss = batch_loss(x, y) / k if k > 1 else batch_loss(x, y)
                    if scaler is not None:
                        scaler.scale(loss).backward()
                    else:
                        loss.backward()
                step_loss = loss.detach() if state.batch % k == 0 else step_loss + loss.detach()
                state.batch += 1
                window.samples += x.shape[0]
                if state.batch % k:
                    continue  # more micro-batches to add to this step's gradient
                took_step = optimiser_step(step_loss)
            halt = stop.requested and not d.active
            if took_step:
                if step_schedule:
                    scheduler.step()
                window.losses.append(step_loss)
                state.step += 1
                hooks.step(state)
                if state.step % settings.log_every == 0:
                    window = log_window(window, x)
                    halt = d.any(stop.requested, device)  # ranks agree where they all are
            if halt or state.step >= max_steps or state.batch >= steps_per_epoch * k:
                break  # (micro-batches that cannot fill a whole step are left for later epochs)
        last_x = x if x is not None else last_x
        if state.batch >= steps_per_epoch * k:
            state.epoch += 1
            state.batch = 0
        stopping = d.any(stop.requested, device)
        finished = state.epoch >= settings.max_epochs or state.step >= max_steps
        validating = finished or (state.batch == 0 and state.epoch % settings.val_every == 0)
        if (stopping or validating) and last_x is not None:
            window = log_window(window, last_x)
        if stopping:
            stop.requested = True
            save(state, False)
            return "interrupted"
        if validating:
            val_metrics = evaluate(parts, val, task, settings.eval_batch_size, amp, d)
            state.last_val = val_metrics
            epoch = state.epoch + state.batch / (steps_per_epoch * k)  # fractional if cut short
            logger.log_metrics({"epoch": round(epoch, 3),
                                **{f"val/{name}": v for name, v in val_metrics.items()}},
                               state.step)
            if scheduler is not None and not step_schedule:
                scheduler.step(val_metrics["loss"])  # plateau: on the validation loss
            value = val_metrics[metric]
            is_best = state.improved(value, settings.mode)
            if is_best:
                state.best_value, state.best_step = value, state.step
                state.best_val = val_metrics
            stop_early = state.note_progress(value, settings)
            save(state, is_best)
            hooks.validated(state, val_metrics)
            if stop_early:
                state.stopped_early = True
                break
    hooks.end(state)
    return "completed"
