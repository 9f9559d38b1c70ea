"""A stack's data: the members' training sets as one tensor and their batch orders (or, for
physics-informed networks, each member's own draws of collocation points), and the target
scale their metrics are restored with.

Both kinds give the stack an epoch's batches as (members, B, ...) inputs and targets
(`epoch(epoch, start)`, as a run's batches give its own), and the splits it is scored on."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch

from dltrain.data.spec import Split, TargetScale
from dltrain.pinn.problem import PinnBatches
from dltrain.vectorised.model import Unstackable

Order = Callable[[int], torch.Tensor]  # epoch -> a member's order of its samples


@dataclass
class StackedData:
    """The members' training data: one copy per distinct data set, (sets, n, ...)."""

    x: torch.Tensor
    y: torch.Tensor
    which: torch.Tensor  # (members,): each member's data set
    val: list[Split]
    test: list[Split]
    which_list: list[int]
    orders: list[Order]  # each member's batch order, as its own ShuffledBatches gives it
    batch_size: int
    steps: int  # batches an epoch

    @classmethod
    def of(cls, trains: Sequence[Split], vals: Sequence[Split], tests: Sequence[Split],
           which: Sequence[int], orders: Sequence[Order], batch_size: int, steps: int
           ) -> StackedData:
        shapes = {(tuple(s.x.shape), tuple(s.y.shape)) for s in trains}
        if len(shapes) != 1:
            raise Unstackable("the members' training sets differ in size")
        # one data set (the usual case) is a view of the members' shared split, not a copy
        x = trains[0].x[None] if len(trains) == 1 else torch.stack([s.x for s in trains])
        y = trains[0].y[None] if len(trains) == 1 else torch.stack([s.y for s in trains])
        return cls(x, y, torch.tensor(which, device=x.device), list(vals), list(tests),
                   list(which), list(orders), batch_size, steps)

    def epoch(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Batches start.. of `epoch`: member i's samples in its own run's order."""
        perms = epoch_orders(self.orders, epoch)
        for idx in batch_slices(perms, self.batch_size, start, self.steps):
            yield self.batch(idx)

    def batch(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Member i's samples idx[i] of its own data set: (members, B, ...), (members, B)."""
        if self.x.shape[0] == 1:
            return self.x[0][idx], self.y[0][idx]
        rows = self.which[:, None]
        return self.x[rows, idx], self.y[rows, idx]


def member_scale(scales: Sequence[TargetScale | None], which: Sequence[int]
                 ) -> TargetScale | None:
    """The target scale of a stack's evaluation from each data set's (`scales`, None where
    targets are not standardised): a shared one as it is, else member i's (`which[i]`'s)
    stacked on a leading axis, which broadcasts against (members, B, ...) targets."""
    if len(scales) == 1 or scales[0] is None:
        return scales[0]
    chosen = [scales[i] for i in which]
    return TargetScale(torch.stack([s.mean for s in chosen]),  # type: ignore[union-attr]
                       torch.stack([s.std for s in chosen]))  # type: ignore[union-attr]


def epoch_orders(orders: Sequence[Callable[[int], torch.Tensor]], epoch: int
                 ) -> torch.Tensor:
    """(members, n): each member's sample order of `epoch`, as its own batches give it."""
    return torch.stack([order(epoch) for order in orders])


def batch_slices(orders: torch.Tensor, batch_size: int, start: int, count: int
                 ) -> Iterator[torch.Tensor]:
    """(members, B) sample indices of batches start..count-1 of an epoch's orders."""
    for i in range(start, count):
        yield orders[:, i * batch_size:(i + 1) * batch_size]


@dataclass
class StackedPoints:
    """Physics-informed members' points: each member draws its own (its PinnBatches, seeded by
    its seed, so that its points are its run's), one batch an epoch. All are scored on the
    same evaluation grid, one shared split (`which_list` all 0)."""

    batches: list[PinnBatches]
    val: list[Split]
    test: list[Split]
    which_list: list[int]

    @classmethod
    def of(cls, batches: Sequence[PinnBatches], val: Split, test: Split) -> StackedPoints:
        if len({b.batch_size for b in batches}) != 1:
            raise Unstackable("the members' draws of points differ in size")
        return cls(list(batches), [val], [test], [0] * len(batches))

    @property
    def batch_size(self) -> int:
        return self.batches[0].batch_size

    def epoch(self, epoch: int, start: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The epoch's one step: (members, N, dims) points, a fresh leaf (the loss
        differentiates the networks with respect to it), and their (members, N, 1) values."""
        if start >= 1:
            return
        drawn = [b.draw(epoch) for b in self.batches]
        yield (torch.stack([d.x for d in drawn]).requires_grad_(True),
               torch.stack([d.y for d in drawn]))
