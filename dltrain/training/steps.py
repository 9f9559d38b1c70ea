"""The optimiser step of a run, picked once before the loop.

A step takes the micro-batches of one optimiser step (one, unless trainer.accumulate > 1)
and returns the step's loss (a tensor on the device: no host sync), or None when
trainer.nan_policy=skip refused a non-finite step. What varies between runs is decided here,
once, and not at every step:

- plain: zero the gradients, forward, backward, optimiser step — the hand-written loop;
- accumulating (or with a gradient scaler): several backward passes, one step; under DDP
  the gradients are exchanged in the last micro-batch's backward only (no_sync before);
- L-BFGS: the optimiser calls a closure as often as its line search asks;
- skip-non-finite: looks at the step's loss and gradient norm before applying it (a sync).
- declared: a model's own step over the parts it owns (a GAN's generator and
  discriminator, each with its optimiser: StepTools).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import torch

from dltrain.optim import penalised_weights
from dltrain.step_tools import StepTools
from dltrain.training.distributed import Dist
from dltrain.training.state import Parts, Settings

Batch = tuple[torch.Tensor, torch.Tensor]
Step = Callable[[Sequence[Batch]], "torch.Tensor | None"]

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass and the loss; a no-op at 32 bits."""
    if precision == "32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def micro_batches(batches: Iterable[Batch], k: int) -> Iterator[Sequence[Batch]]:
    """The batches in groups of `k`, one group per optimiser step (a last, short group is
    dropped: it cannot fill a step)."""
    if k == 1:
        for batch in batches:
            yield (batch,)
        return
    group: list[Batch] = []
    for batch in batches:
        group.append(batch)
        if len(group) == k:
            yield group
            group = []


def batch_loss(parts: Parts, precision: str, device: torch.device
               ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The training loss of a batch: the model's loss plus the penalty terms, in the run's
    precision. A loss that asks for the inputs (`forward(out, y, x)`) is given them."""
    forward, loss_fn, penalties = parts.forward, parts.criterion, parts.penalties
    if precision == "32" and not penalties:
        return lambda x, y: loss_fn(forward(x), y, x)
    amp = autocast(device, precision)
    weights = penalised_weights(parts.model) if penalties else []

    def loss_of(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with amp:
            loss = loss_fn(forward(x), y, x)
            for penalty in penalties:
                loss = loss + penalty(weights)
        return loss

    return loss_of


def applier(parts: Parts, settings: Settings, d: Dist, device: torch.device
            ) -> Callable[[torch.Tensor], torch.Tensor | None]:
    """Apply the accumulated gradient of a step whose loss is given: unscale (16-bit),
    clip, step; with nan_policy=skip, only if the loss and the gradient are finite."""
    optimizer, scaler = parts.optimizer, parts.scaler
    assert optimizer is not None
    params = [p for p in parts.model.parameters() if p.requires_grad]
    clip = clipper(params, settings)

    def update() -> None:
        if scaler is None:
            optimizer.step()
        else:
            scaler.step(optimizer)
            scaler.update()

    def unscale() -> None:  # the clipping and the finiteness check see the true gradient
        if scaler is not None:
            scaler.unscale_(optimizer)

    if settings.nan_policy == "skip":
        def apply_if_finite(loss: torch.Tensor) -> torch.Tensor | None:
            unscale()
            norm = torch.nn.utils.clip_grad_norm_(params, math.inf, foreach=True)
            finite = bool(torch.isfinite(loss) & torch.isfinite(norm))  # a host sync
            if d.any(not finite, device):  # every rank skips, or none
                if scaler is not None:
                    scaler.update()  # (lowers the scale after an overflow)
                return None
            clip()
            update()
            return loss
        return apply_if_finite

    def apply(loss: torch.Tensor) -> torch.Tensor:
        unscale()
        clip()
        update()
        return loss
    return apply


def clipper(params: list[torch.Tensor], settings: Settings) -> Callable[[], None]:
    """trainer.grad_clip: clip the gradients' global norm, or each element, or nothing."""
    max_norm, value = settings.clip_norm, settings.clip_value

    def clip() -> None:
        if max_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
        elif value is not None:
            torch.nn.utils.clip_grad_value_(params, value, foreach=True)
    return clip


def grad_clearer(optimizer: torch.optim.Optimizer) -> Callable[[], None]:
    """`optimizer.zero_grad(set_to_none=True)` without its profiler record and group walk:
    12 us a step, 2% of a small model's step, for setting a few attributes to None."""
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def clear() -> None:
        for p in params:
            p.grad = None
    return clear


def pick_step(parts: Parts, settings: Settings, device: torch.device, d: Dist) -> Step:
    """The step function of this run (see the module's docstring)."""
    optimizer = parts.optimizer
    assert optimizer is not None
    if hasattr(parts.model, "training_step"):  # a model that declares its own (a GAN's)
        return declared_step(parts, settings, device)
    loss_of = batch_loss(parts, settings.precision, device)
    if isinstance(optimizer, torch.optim.LBFGS) or getattr(optimizer, "needs_closure", False):
        return lbfgs_step(optimizer, loss_of, d)  # (optim=adam_lbfgs: both its phases)
    plain = (settings.accumulate == 1 and parts.scaler is None and settings.nan_policy != "skip"
             and settings.clip_norm is None and settings.clip_value is None)
    if plain:
        return plain_step(optimizer, loss_of)
    # DDP exchanges gradients in every backward pass; of a step's micro-batches only the last
    # needs to (the others accumulate locally), which cuts the exchanges k-fold.
    no_sync = getattr(parts.forward, "no_sync", None) if d.active else None
    return accumulating_step(optimizer, loss_of, applier(parts, settings, d, device),
                             settings.accumulate, no_sync, parts.scaler)


def plain_step(optimizer: torch.optim.Optimizer,
               loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Step:
    zero_grad = grad_clearer(optimizer)

    def step(micro: Sequence[Batch]) -> torch.Tensor:
        x, y = micro[0]
        zero_grad()
        loss = loss_of(x, y)
        loss.backward()
        optimizer.step()
        return loss.detach()
    return step


def accumulating_step(optimizer: torch.optim.Optimizer,
                      loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      apply: Callable[[torch.Tensor], torch.Tensor | None], k: int,
                      no_sync: Callable[[], contextlib.AbstractContextManager] | None,
                      scaler: torch.amp.GradScaler | None) -> Step:
    zero_grad = grad_clearer(optimizer)

    def step(micro: Sequence[Batch]) -> torch.Tensor | None:
        zero_grad()
        total: torch.Tensor | None = None
        for i, (x, y) in enumerate(micro):
            last = i == len(micro) - 1
            with contextlib.nullcontext() if no_sync is None or last else no_sync():
                loss = loss_of(x, y) / k if k > 1 else loss_of(x, y)
                (scaler.scale(loss) if scaler is not None else loss).backward()
            total = loss.detach() if total is None else total + loss.detach()
        assert total is not None
        return apply(total)
    return step


def lbfgs_step(optimizer: torch.optim.Optimizer,
               loss_of: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], d: Dist) -> Step:
    zero_grad = grad_clearer(optimizer)

    def step(micro: Sequence[Batch]) -> torch.Tensor:
        x, y = micro[0]

        def closure() -> torch.Tensor:  # re-evaluated as often as the line search asks
            zero_grad()
            loss = loss_of(x, y)
            loss.backward()
            # Under DDP the line search must see the global batch's loss, as it sees its
            # averaged gradient: on its own shard's loss each process would search its own
            # way and their gradient exchanges would fall out of step.
            return d.mean(loss.detach()) if d.active else loss

        return optimizer.step(closure).detach()
    return step


def declared_step(parts: Parts, settings: Settings, device: torch.device) -> Step:
    """The step of a model that declares its own (see StepTools): the loop calls it as any
    other step, knowing nothing of the parts it steps."""
    assert parts.optimizer is not None
    own = parts.model.training_step  # type: ignore[operator]
    norm, value = settings.clip_norm, settings.clip_value

    def clip(params: list[torch.Tensor]) -> None:
        if norm is not None:
            torch.nn.utils.clip_grad_norm_(params, norm, foreach=True)
        elif value is not None:
            torch.nn.utils.clip_grad_value_(params, value, foreach=True)

    tools = StepTools(parts.optimizer, parts.loss, autocast(device, settings.precision), clip,
                      settings.d_steps)

    def step(micro: Sequence[Batch]) -> torch.Tensor:
        x, y = micro[0]
        return own(x, y, tools)
    return step
