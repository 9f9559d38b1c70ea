"""Optimiser steps over a stack: every member's parameters in one (members, P) tensor.

The hyperparameters are read from each member's own torch optimiser (its param groups, as
its schedule leaves them), so a member's learning rate, weight decay, momentum or betas are
its own: tensors of shape (members, 1), or (members, P) where they differ between a member's
parameters (weights decay, biases do not). The updates follow torch's single-tensor
implementations term by term (SGD, Adam, AdamW; Adam through torch's fused kernel where the
members share betas and eps), so a member's step equals its own optimiser's step to float
rounding; `member_state` gives the state back in torch's format,
for checkpoints that `dltrain resume` continues with the member's own optimiser.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class Layout:
    """Where each parameter of a member lies in a flat row of P numbers."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]

    @classmethod
    def of(cls, model: nn.Module) -> Layout:
        named = [(n, tuple(p.shape)) for n, p in model.named_parameters() if p.requires_grad]
        return cls(tuple(n for n, _ in named), tuple(s for _, s in named))

    @property
    def sizes(self) -> list[int]:
        return [math.prod(s) for s in self.shapes]

    @property
    def size(self) -> int:
        return sum(self.sizes)

    def slices(self) -> list[slice]:
        bounds, start = [], 0
        for n in self.sizes:
            bounds.append(slice(start, start + n))
            start += n
        return bounds

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> (members, *shape) views into `flat` (members, P)."""
        m = flat.shape[0]
        return {name: flat[:, s].view(m, *shape)
                for name, s, shape in zip(self.names, self.slices(), self.shapes, strict=True)}

    def flatten(self, params: dict[str, torch.Tensor], out: torch.Tensor | None = None
                ) -> torch.Tensor:
        """(members, P) from name -> (members, *shape), e.g. torch.func.stack_module_state's;
        written into `out` when given."""
        first = params[self.names[0]]
        return torch.cat([params[n].reshape(first.shape[0], -1) for n in self.names], dim=1,
                         out=out)

    def row(self, flat_row: torch.Tensor) -> dict[str, torch.Tensor]:
        """name -> a copy of one member's tensor from its row (P,) (a copy, so that a saved
        checkpoint holds that member's numbers, not the whole stack's storage)."""
        return {name: flat_row[s].view(shape).clone()
                for name, s, shape in zip(self.names, self.slices(), self.shapes, strict=True)}


class Hyperparameters:
    """Reads a hyperparameter of every member's every parameter from the members' optimisers."""

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer],
                 models: Sequence[nn.Module], layout: Layout, device: torch.device) -> None:
        self.optimizers = list(optimizers)
        self.layout = layout
        self.device = device
        self.groups: list[list[int]] = []  # member -> parameter -> its param group
        for opt, model in zip(self.optimizers, models, strict=True):
            group_of = {id(p): g for g, group in enumerate(opt.param_groups)
                        for p in group["params"]}
            named = dict(model.named_parameters())
            self.groups.append([group_of[id(named[n])] for n in layout.names])

    def values(self, key: str, index: int | None = None) -> list[list[float]]:
        table = []
        for opt, groups in zip(self.optimizers, self.groups, strict=True):
            row = []
            for g in groups:
                value = opt.param_groups[g][key]
                row.append(float(value[index] if index is not None else value))
            table.append(row)
        return table

    def tensor(self, key: str, index: int | None = None) -> torch.Tensor:
        """(members, 1) where each member has one value for all its parameters, else
        (members, P); float64, for the arithmetic torch does in Python floats."""
        return self.as_tensor(self.values(key, index))

    def as_tensor(self, table: list[list[float]]) -> torch.Tensor:
        """`tensor` of a table that `values` read."""
        values = torch.tensor(table, dtype=torch.float64)
        if bool((values == values[:, :1]).all()):
            return values[:, :1].to(self.device)
        sizes = torch.tensor(self.layout.sizes)
        return values.repeat_interleave(sizes, dim=1).to(self.device)

    def flag(self, key: str) -> bool:
        """A switch that every member has alike (the planner saw to that)."""
        flags = {bool(opt.param_groups[g].get(key, False)) for opt, groups in
                 zip(self.optimizers, self.groups, strict=True) for g in groups}
        if len(flags) != 1:
            raise ValueError(f"members differ in {key}")
        return flags.pop()


class StackedOptimizer(Protocol):
    def refresh(self) -> None:
        """Read the hyperparameters again (after a schedule moved them)."""

    def step(self, params: torch.Tensor, grads: torch.Tensor) -> None:
        """Update `params` (members, P) in place from `grads` (members, P)."""

    def member_state(self, i: int) -> dict[str, dict[str, Any]]:
        """Member i's state as torch's optimiser keeps it, by parameter name."""

    def snapshot(self) -> StackedOptimizer:
        """A copy of the state as it is now, which later steps leave alone."""


def _f32(t: torch.Tensor) -> torch.Tensor:
    return t.to(torch.float32)


def _one(table: list[list[float]]) -> float | None:
    """The one value every member has for every parameter, or None."""
    values = {v for row in table for v in row}
    return values.pop() if len(values) == 1 else None


class StackedSGD:
    """torch.optim.SGD: w <- w - lr (g + wd w), with heavy-ball or Nesterov momentum."""

    # what it stands for: torch's classes, and the keys of their configs it implements (the
    # vectorised plan stacks a job only where these cover its optimiser's config)
    targets = ("torch.optim.SGD",)
    keys = frozenset({"lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize",
                      "foreach", "fused", "differentiable"})

    def __init__(self, hp: Hyperparameters, shape: torch.Size) -> None:
        self.hp = hp
        self.nesterov = hp.flag("nesterov")
        self.buffer: torch.Tensor | None = None
        self.refresh()

    def refresh(self) -> None:
        hp = self.hp
        self.lr = _f32(hp.tensor("lr"))
        wd = hp.tensor("weight_decay")
        self.wd = _f32(wd) if bool((wd != 0).any()) else None
        momentum = hp.tensor("momentum")
        self.momentum = _f32(momentum) if bool((momentum != 0).any()) else None
        # where momentum is 0 torch steps along the gradient itself and keeps no buffer
        self.plain = momentum == 0 if self.momentum is not None and bool(
            (momentum == 0).any()) else None
        self.keep = _f32(1 - hp.tensor("dampening"))
        self.buffered = [[m != 0 for m in row] for row in hp.values("momentum")]

    def step(self, params: torch.Tensor, grads: torch.Tensor) -> None:
        g = grads if self.wd is None else grads + self.wd * params
        if self.momentum is not None:
            if self.buffer is None:
                self.buffer = g.detach().clone()
            else:
                self.buffer.mul_(self.momentum).add_(self.keep * g)
            step = g + self.momentum * self.buffer if self.nesterov else self.buffer
            g = step if self.plain is None else torch.where(self.plain, g, step)
        params.sub_(self.lr * g)

    def snapshot(self) -> StackedSGD:
        frozen = copy.copy(self)
        frozen.buffer = None if self.buffer is None else self.buffer.clone()
        return frozen

    def member_state(self, i: int) -> dict[str, dict[str, Any]]:
        if self.buffer is None:
            return {}
        rows = self.hp.layout.row(self.buffer[i])
        return {name: {"momentum_buffer": rows[name]}
                for name, kept in zip(self.hp.layout.names, self.buffered[i], strict=True)
                if kept}


class StackedAdam:
    """torch.optim.Adam (L2 weight decay in the gradient) and AdamW (decoupled decay).

    Where the members share betas and eps (a sweep of seeds, rates and decays), the moments
    and the step direction come from torch's fused Adam kernel, one pass over the stack:
    run with lr=-1 on a zeroed scratch tensor it leaves there the direction m^/(sqrt(v^)+eps),
    which each member then takes with its own learning rate. Otherwise the update is torch's
    Adam operation for operation, each member's hyperparameters as (members, 1) tensors.
    """

    targets = ("torch.optim.Adam", "torch.optim.AdamW")  # (see StackedSGD)
    keys = frozenset({"lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "foreach",
                      "fused", "capturable", "differentiable"})

    def __init__(self, hp: Hyperparameters, shape: torch.Size, decoupled: bool) -> None:
        self.hp = hp
        self.decoupled = decoupled
        self.exp_avg = torch.zeros(shape, device=hp.device)
        self.exp_avg_sq = torch.zeros(shape, device=hp.device)
        self.steps = 0
        # the fused kernel's step count, set from `steps`, and its scratch tensor
        self.step_count = torch.zeros((), device=hp.device)
        self.direction: torch.Tensor | None = None
        self.refresh()

    def refresh(self) -> None:
        hp = self.hp
        self.lr = hp.tensor("lr")
        wd = hp.tensor("weight_decay")
        self.wd = wd if bool((wd != 0).any()) else None
        tables = hp.values("betas", 0), hp.values("betas", 1), hp.values("eps")
        self.shared = [_one(table) for table in tables]  # beta1, beta2, eps; None: they differ
        self.beta1, self.beta2 = hp.as_tensor(tables[0]), hp.as_tensor(tables[1])
        self.eps = _f32(hp.as_tensor(tables[2]))
        self.keep1 = _f32(1 - self.beta1)  # lerp weight of the new gradient
        self.beta2_32 = _f32(self.beta2)
        self.keep2 = _f32(1 - self.beta2)
        if self.wd is not None:
            self.decay = _f32(1 - self.lr * self.wd) if self.decoupled else _f32(self.wd)
        self.lr32 = _f32(self.lr)

    def step(self, params: torch.Tensor, grads: torch.Tensor) -> None:
        self.steps += 1
        g = grads
        if self.wd is not None:
            if self.decoupled:
                params.mul_(self.decay)
            else:
                g = g + self.decay * params
        beta1, beta2, eps = self.shared
        if beta1 is not None and beta2 is not None and eps is not None:
            if self.direction is None:
                self.direction = torch.zeros_like(self.exp_avg)
            self.direction.zero_()
            self.step_count.fill_(self.steps)  # the kernel reads it as torch's Adam keeps it
            torch._fused_adam_([self.direction], [g], [self.exp_avg], [self.exp_avg_sq], [],
                               [self.step_count], lr=-1.0, beta1=beta1, beta2=beta2,
                               weight_decay=0.0, eps=eps, amsgrad=False, maximize=False)
            params.addcmul_(self.direction, self.lr32, value=-1.0)
            return
        # in place where torch is: a step of the whole stack is ten passes over it
        self.exp_avg.lerp_(g, self.keep1)
        self.exp_avg_sq.mul_(self.beta2_32).addcmul_(g * self.keep2, g)
        # the bias corrections in float64, as torch computes them in Python floats
        correction1 = 1 - self.beta1 ** self.steps
        correction2_sqrt = (1 - self.beta2 ** self.steps).sqrt()
        step_size = _f32(-(self.lr / correction1))
        denom = self.exp_avg_sq.sqrt().div_(_f32(correction2_sqrt)).add_(self.eps)
        params.addcdiv_(self.exp_avg * step_size, denom)

    def snapshot(self) -> StackedAdam:
        frozen = copy.copy(self)
        frozen.exp_avg, frozen.exp_avg_sq = self.exp_avg.clone(), self.exp_avg_sq.clone()
        return frozen

    def member_state(self, i: int) -> dict[str, dict[str, Any]]:
        layout = self.hp.layout
        if self.steps == 0:
            return {}
        avg, avg_sq = layout.row(self.exp_avg[i]), layout.row(self.exp_avg_sq[i])
        return {name: {"step": torch.tensor(float(self.steps), dtype=torch.float32),
                       "exp_avg": avg[name], "exp_avg_sq": avg_sq[name]}
                for name in layout.names}


# torch's optimiser class (a config's `_target_`) -> the config keys its stacked form implements
STACKED_OPTIMISERS = {target: cls.keys for cls in (StackedSGD, StackedAdam)
                      for target in cls.targets}


def stacked_optimizer(optimizers: Sequence[torch.optim.Optimizer], models: Sequence[nn.Module],
                      layout: Layout, device: torch.device) -> StackedOptimizer:
    """The vectorised counterpart of the members' optimisers (all of one class)."""
    kinds = {type(o) for o in optimizers}
    if len(kinds) != 1:
        raise ValueError(f"members use different optimisers: {sorted(k.__name__ for k in kinds)}")
    kind = kinds.pop()
    hp = Hyperparameters(optimizers, models, layout, device)
    shape = torch.Size((len(optimizers), layout.size))
    if kind is torch.optim.SGD:
        return StackedSGD(hp, shape)
    if kind in (torch.optim.Adam, torch.optim.AdamW):
        decoupled = kind is torch.optim.AdamW or hp.flag("decoupled_weight_decay")
        return StackedAdam(hp, shape, decoupled)
    raise ValueError(f"{kind.__name__} has no vectorised step")


def load_member_state(optimizer: torch.optim.Optimizer, model: nn.Module,
                      state: dict[str, dict[str, Any]]) -> None:
    """Put a member's state (from `member_state`) into its own torch optimiser."""
    named = dict(model.named_parameters())
    optimizer.state.clear()
    for name, entry in state.items():
        optimizer.state[named[name]] = entry


def clip_rows(grads: torch.Tensor, layout: Layout, max_norm: float | None,
              value: float | None) -> None:
    """trainer.grad_clip for every member (row) of the stack's (members, P) gradient.

    torch.nn.utils.clip_grad_norm_ cannot take the rows of one flat tensor; this is its
    computation, in its order (each tensor's norm, then the norm of those), so that a member
    is clipped as its run is, to float rounding."""
    if max_norm is not None:
        norms = torch.stack([grads[:, sl].norm(dim=1) for sl in layout.slices()], dim=1)
        total = norms.norm(dim=1, keepdim=True)
        grads.mul_(torch.clamp(max_norm / (total + 1e-6), max=1.0))
    elif value is not None:
        grads.clamp_(-value, value)
