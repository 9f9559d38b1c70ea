"""Many models of one architecture as one: parameters stacked along a leading axis (members),
forward by vmap(functional_call) (traced once a call repeats, see StackedModel.gradients),
dropout masks from each member's own random stream.

The members' parameters live in one flat (members, P) tensor (`Layout` says where each one
lies), so that a step of the optimiser is a handful of operations on the whole stack whatever
the number of layers. The forward pass reads (members, *shape) views of it.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

from dltrain.data.spec import Split, TargetScale
from dltrain.losses import MetricTotals, with_inputs
from dltrain.models.layers import ACTIVATIONS, POOLS
from dltrain.optim import Penalty
from dltrain.vectorised.optim import Layout
from dltrain.vectorised.trace import trace

log = logging.getLogger("dltrain")

TRACE_AFTER = 3  # a call is traced when it comes for the third time (StackedModel._traced)


class Unstackable(Exception):
    """These jobs cannot train as one stack; the message says why, in one sentence."""


# Layers whose forward is the same function of (parameters, buffers, input) for every member
# and draws no random numbers of its own (dropout's are handed in): what a stack computes
# exactly under vmap. Batch norm's running statistics are buffers, stacked like parameters:
# each member updates its own rows of them in its training forward pass.
_POOL_TYPES = {cls for by_dims in POOLS.values() for cls in by_dims.values()}
# dltrain's own modules declare it themselves (`stackable = True` on the class: a forward that
# only composes such layers), so that this list names torch's layers only.
STACKED_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Sequential, nn.Linear, nn.Conv1d, nn.Conv2d,
    nn.BatchNorm1d, nn.BatchNorm2d, nn.Flatten, nn.Identity, nn.Dropout,
    nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, *ACTIVATIONS.values(), *_POOL_TYPES,
)


class MaskDropout(nn.Module):
    """Dropout with its mask handed in: functional_call puts each member's mask (drawn by
    `StackedModel.masks`, already scaled by 1/(1-p)) into the `mask` buffer. In eval mode it
    passes its input through, as nn.Dropout does."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mask", torch.ones(()), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask if self.training else x


@dataclass(frozen=True)
class DropoutLayer:
    """A dropout layer of the stack: its name, each member's rate, its input's shape."""

    name: str
    rates: tuple[float, ...]
    shape: tuple[int, ...]


def check_layers(model: nn.Module, name: str) -> None:
    """Refuse a model with a layer the stack does not compute exactly."""
    odd = sorted({type(m).__name__ for m in model.modules() if not (
        isinstance(m, STACKED_LAYERS) or getattr(type(m), "stackable", False))})
    if odd:
        raise Unstackable(f"model={name} has layers the stack does not train: {', '.join(odd)}")


def _template(models: Sequence[nn.Module]) -> tuple[nn.Module, list[str]]:
    """One member's architecture, with every nn.Dropout turned into a MaskDropout, on the meta
    device (functional_call supplies the tensors). The member with the most dropout layers
    is copied: one without dropout has an Identity, or nothing, where the others drop, and
    takes a mask of ones there."""
    def dropouts(model: nn.Module) -> list[str]:
        return [n for n, m in model.named_modules() if isinstance(m, nn.Dropout)]

    source = max(models, key=lambda m: len(dropouts(m)))
    template = copy.deepcopy(source).to("meta")
    names = dropouts(template)
    for name in names:
        parent, _, leaf = name.rpartition(".")
        setattr(template.get_submodule(parent) if parent else template, leaf, MaskDropout())
    return template, names


def _rate(model: nn.Module, name: str) -> float:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        return 0.0
    return float(module.p) if isinstance(module, nn.Dropout) else 0.0


class StackedModel:
    """The members' models as one: `flat` holds every member's parameters, (members, P)."""

    def __init__(self, models: Sequence[nn.Module], loss: nn.Module,
                 penalised: Sequence[str], device: torch.device, trace: bool = True) -> None:
        self.layout = Layout.of(models[0])
        for model in models[1:]:
            if Layout.of(model) != self.layout:
                raise Unstackable("the members' models differ in their parameters")
        params, buffers = stack_module_state(list(models))
        # The stack's numbers live in `flat`; the parameters the forward pass reads are leaf
        # views of it, whose gradients land in views of `grad`: the optimiser updates `flat`
        # from `grad` in a few whole-stack operations, and autograd never slices back.
        self.flat = self.layout.flatten(params).detach().to(device)
        self.grad = torch.zeros_like(self.flat)
        self.params = {n: v.requires_grad_(True) for n, v in self.layout.views(self.flat).items()}
        for name, view in self.layout.views(self.grad).items():
            self.params[name].grad = view
        # (members, ...) per buffer: batch norm's running statistics, updated in place
        self.buffers = {n: b.to(device) for n, b in buffers.items()}
        self.template, self._dropout_names = _template(models)
        self.rates = {name: tuple(_rate(m, name) for m in models)
                      for name in self._dropout_names}
        self.dropout: list[DropoutLayer] = []
        self.dropout_found = not self._dropout_names  # shapes known (or nothing to find)
        self.loss = loss
        self.penalised = list(penalised)
        self.members = len(models)
        self.device = device
        self.zeros = torch.zeros(self.members, device=device)  # penalties nobody has
        self.views = self.layout.views(self.flat)  # what the traced step reads
        self.trace = trace
        self.traced: dict[tuple[Any, ...], Any] = {}  # a call -> its trace, or None
        self.calls: dict[tuple[Any, ...], int] = {}  # a call -> how often it came

    # -- dropout -------------------------------------------------------------------------

    def find_dropout_shapes(self, x: torch.Tensor) -> None:
        """Record the input shape of every dropout layer on a training batch (B, ...), in the
        order the forward pass calls them: the order each member's run draws its masks in."""
        seen: list[tuple[str, tuple[int, ...]]] = []
        modules = dict(self.template.named_modules())

        def hook(name: str) -> Callable[..., None]:
            def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
                seen.append((name, tuple(inputs[0].shape)))
            return record

        handles = [modules[n].register_forward_pre_hook(hook(n)) for n in self._dropout_names]
        try:
            self.template.eval()
            with torch.no_grad():
                one = {k: v[0] for k, v in self.layout.views(self.flat).items()}
                one.update({k: b[0].clone() for k, b in self.buffers.items()})
                functional_call(self.template, one, (x,))
        finally:
            for handle in handles:
                handle.remove()
        if len({n for n, _ in seen}) != len(seen):
            raise Unstackable("a dropout layer runs more than once per forward pass")
        self.dropout = [DropoutLayer(n, self.rates[n], shape) for n, shape in seen]
        self.dropout_found = True

    def masks(self, generators: Sequence[torch.Generator]) -> dict[str, torch.Tensor]:
        """Every member's dropout masks for one step, (members, *shape) per layer.

        Member i draws from `generators[i]` exactly what nn.Dropout draws in its own run
        (on the CPU: empty_like(x).bernoulli_(1 - p), divided by 1 - p), layer after layer;
        a member that does not drop there takes ones, and draws nothing."""
        masks = {}
        for layer in self.dropout:
            ones = torch.ones(layer.shape)
            rows = []
            for p, gen in zip(layer.rates, generators, strict=True):
                if p <= 0:
                    rows.append(ones)
                elif p >= 1:
                    rows.append(torch.zeros(layer.shape))
                else:
                    rows.append(torch.empty(layer.shape).bernoulli_(1 - p, generator=gen)
                                .div_(1 - p))
            masks[f"{layer.name}.mask"] = torch.stack(rows).to(self.device)
        return masks

    # -- training ------------------------------------------------------------------------

    def _member_loss(self, l1: torch.Tensor | None, l2: torch.Tensor | None
                     ) -> Callable[..., torch.Tensor]:
        """One member's training loss, the function the stack maps over its members.

        `l1`, `l2`: (members,) coefficients of the penalty terms, None where no member has
        one; a member with coefficient 0 adds exactly 0, as its run adds nothing.
        """
        template, loss_fn, penalised = self.template, self.loss, self.penalised

        def member(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                   mask: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                   c1: torch.Tensor, c2: torch.Tensor) -> torch.Tensor:
            out = functional_call(template, {**params, **buffers, **mask}, (x,))
            loss = loss_fn(out, y)
            weights = [params[n] for n in penalised]
            if l1 is not None:
                loss = loss + c1 * Penalty(1.0, 1).total(weights)
            if l2 is not None:
                loss = loss + c2 * Penalty(1.0, 2).total(weights)
            return loss

        return member

    def losses(self, x: torch.Tensor, y: torch.Tensor, masks: dict[str, torch.Tensor],
               l1: torch.Tensor | None, l2: torch.Tensor | None) -> torch.Tensor:
        """Each member's training loss on its own batch: x (members, B, ...) -> (members,).
        Its backward pass adds each member's gradient into `grad` (zero it first)."""
        if not self.template.training:
            self.template.train()
        zeros = self.zeros
        return vmap(self._member_loss(l1, l2))(
            self.params, self.buffers, masks, x, y, zeros if l1 is None else l1,
            zeros if l2 is None else l2)

    def gradients(self, x: torch.Tensor, y: torch.Tensor, masks: dict[str, torch.Tensor],
                  l1: torch.Tensor | None, l2: torch.Tensor | None) -> torch.Tensor:
        """Each member's training loss on its own batch (members,), its gradient written
        into `grad`: the losses' backward pass, by a trace of it where one can be made.

        Under vmap every operation passes through functorch's batching rules, in Python
        in part, per call: ~0.1 ms per layer for a small MLP, more than the arithmetic. So
        the members' loss and gradient, vmap(grad_and_value(member)), are traced once per
        batch shape (make_fx: the aten operations vmap dispatches, recorded with real
        tensors) and replayed each step: the same operations, without the batching layer.
        A model the tracer refuses trains on untraced.
        """
        if not self.template.training:
            self.template.train()
        zeros = self.zeros
        args = (self.views, self.buffers, masks, x, y, zeros if l1 is None else l1,
                zeros if l2 is None else l2)
        key = ("train", tuple(x.shape), tuple(y.shape),
               *(tuple(m.shape) for m in masks.values()), l1 is None, l2 is None)
        # tracing runs the step: on copies of the buffers (batch norm updates them)
        step = self._traced(key, lambda: vmap(grad_and_value(self._member_loss(l1, l2))),
                            lambda: (args[0], {n: b.clone() for n, b in self.buffers.items()},
                                     *args[2:]))
        if step is None:
            return self._backward(x, y, masks, l1, l2)
        grads, losses = step(*args)
        self.layout.flatten(grads, out=self.grad)
        return losses

    def _backward(self, x: torch.Tensor, y: torch.Tensor, masks: dict[str, torch.Tensor],
                  l1: torch.Tensor | None, l2: torch.Tensor | None) -> torch.Tensor:
        self.grad.zero_()
        losses = self.losses(x, y, masks, l1, l2)
        # members are independent: the gradient of the sum is each member's own gradient
        losses.sum().backward()
        return losses.detach()

    def _input_step(self, l1: torch.Tensor | None, l2: torch.Tensor | None
                    ) -> Callable[..., Any]:
        """The members' loss and gradient for a loss that differentiates the networks by
        their inputs (a physics-informed one, dltrain.pinn.loss), as one function of
        (params, buffers, masks, x, y, c1, c2) -> (gradients, losses, the loss's terms).

        The forward pass runs under vmap; the loss and its derivatives outside it, by torch's
        autograd on the (members, N, dims) points x. Members do not mix, so the gradient of
        the sum of their outputs is each one's own derivative, and the gradient of the sum
        of their losses each one's own gradient."""
        template, loss_fn, penalised = self.template, self.loss, self.penalised
        names = self.layout.names

        def forward(params: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                    mask: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
            return functional_call(template, {**params, **buffers, **mask}, (x,))

        def step(views: dict[str, torch.Tensor], buffers: dict[str, torch.Tensor],
                 masks: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
                 c1: torch.Tensor, c2: torch.Tensor
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
            params = {n: v.detach().requires_grad_(True) for n, v in views.items()}
            x = x.detach().requires_grad_(True)
            losses = loss_fn(vmap(forward)(params, buffers, masks, x), y, x)
            weights = [params[n] for n in penalised]  # (members, ...) each
            if l1 is not None:  # each member's sum of |w| over its own weights, as Penalty's
                losses = losses + c1 * sum(w.abs().flatten(1).sum(1) for w in weights)
            if l2 is not None:
                losses = losses + c2 * sum(w.square().flatten(1).sum(1) for w in weights)
            grads = torch.autograd.grad(losses.sum(), [params[n] for n in names])
            return dict(zip(names, grads, strict=True)), losses.detach(), dict(loss_fn.last)

        return step

    def input_gradients(self, x: torch.Tensor, y: torch.Tensor, masks: dict[str, torch.Tensor],
                        l1: torch.Tensor | None, l2: torch.Tensor | None) -> torch.Tensor:
        """`gradients` for a loss that differentiates the networks by their inputs: each
        member's loss (members,), its gradient written into `grad` and the loss's terms
        into the loss's `last` (a trace cannot set them itself).

        Traced as `gradients` is (the autograd engine's backward passes recorded as the
        aten operations they run, replayed each step): a small network on a few points is
        dispatch-bound, hundreds of tiny operations a step."""
        if not self.template.training:
            self.template.train()
        zeros = self.zeros
        args = (self.views, self.buffers, masks, x.detach(), y, zeros if l1 is None else l1,
                zeros if l2 is None else l2)
        key = ("inputs", tuple(x.shape), tuple(y.shape),
               *(tuple(m.shape) for m in masks.values()), l1 is None, l2 is None)
        traced = self._traced(key, lambda: self._input_step(l1, l2),
                              lambda: (args[0], {n: b.clone() for n, b in self.buffers.items()},
                                       *args[2:]))
        grads, losses, terms = (traced or self._input_step(l1, l2))(*args)
        self.layout.flatten(grads, out=self.grad)
        self.loss.last = terms
        return losses

    def _traced(self, key: tuple[Any, ...], fn: Callable[[], Callable[..., Any]],
                args: Callable[[], tuple[Any, ...]]) -> Callable[..., Any] | None:
        """The trace of the call `key`, made (from `fn()` on `args()`) when the call comes
        for the TRACE_AFTER-th time: a trace costs a few calls' time, and pays for itself
        over calls that repeat (every step), not over one that comes once (the short last
        batch of a test split). None until then, and where the tracer refuses the call."""
        if not self.trace:
            return None
        calls = self.calls[key] = self.calls.get(key, 0) + 1
        if calls == TRACE_AFTER:
            self.traced[key] = trace(fn(), args())
        return self.traced.get(key)

    # -- evaluation ----------------------------------------------------------------------

    def weights(self) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """A copy of every member's parameters and buffers as they are now."""
        return self.flat.clone(), {n: b.clone() for n, b in self.buffers.items()}

    @torch.inference_mode()
    def evaluate(self, flat: torch.Tensor, buffers: dict[str, torch.Tensor],
                 splits: Sequence[Split], which: Sequence[int], task: str, batch_size: int,
                 scale: TargetScale | None = None) -> list[dict[str, float]]:
        """Every member's mean loss and metrics on its split (`splits[which[i]]`), scored as
        dltrain.training.loop.evaluate scores one model: the same batches, the same sums.
        `scale` (member_scale) puts regression metrics back in the data's own units."""
        self.template.eval()
        template, loss_fn = self.template, with_inputs(self.loss)
        shared = len(splits) == 1
        xs = splits[0].x if shared else torch.stack([splits[d].x for d in which])
        ys = splits[0].y if shared else torch.stack([splits[d].y for d in which])
        totals = MetricTotals(task, members=self.members, scale=scale)
        axis = None if shared else 0

        def member(params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
            out = functional_call(template, params, (x,))
            return out, loss_fn(out, y, x)

        forward = vmap(member, in_dims=(0, axis, axis))
        params = {**self.layout.views(flat), **buffers}
        for start in range(0, len(splits[0]), batch_size):
            x = xs[start:start + batch_size] if shared else xs[:, start:start + batch_size]
            y = ys[start:start + batch_size] if shared else ys[:, start:start + batch_size]
            key = ("evaluate", tuple(x.shape), tuple(y.shape), shared)
            traced = self._traced(key, lambda: forward, lambda x=x, y=y: (params, x, y))
            out, loss = (traced or forward)(params, x, y)
            totals.update(out, y.expand(self.members, *y.shape) if shared else y, loss)
        return totals.compute_each()
