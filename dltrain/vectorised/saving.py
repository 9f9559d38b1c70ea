"""The checkpoints of a stack's members.

A run writes last.pt (and best.pt when it improved) after every validation; a stack of many
small runs would spend longer on that than on training. So the stack keeps what each member's
files would hold (a Snapshot, the best weights) and writes them when the member stops, on a
stop request, every `save_every_s` seconds, and at the end: the files are then what its run's
files are at that point.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence

from dltrain.vectorised.members import Member, Snapshot, buffer_row, row_weights
from dltrain.vectorised.model import StackedModel
from dltrain.vectorised.optim import StackedOptimizer, load_member_state


class MemberFiles:
    """Each member's best weights so far, and its checkpoints not yet written."""

    def __init__(self, model: StackedModel, optimizer: StackedOptimizer,
                 members: Sequence[Member], save_every_s: float = 60.0) -> None:
        self.model, self.optimizer, self.members = model, optimizer, members
        self.best, self.best_buffers = model.weights()  # each member's best so far
        self.save_every_s = save_every_s
        self.flushed = time.perf_counter()

    def keep_best(self, i: int) -> None:
        """Member i's weights now are its best."""
        self.best[i] = self.model.flat[i]
        for name, b in self.model.buffers.items():
            self.best_buffers[name][i] = b[i]

    def snapshot(self) -> Callable[[Member], None]:
        """A function that records where a member stands now (its state as it is when
        called); the stack's parameters and optimiser state are copied once for all."""
        (flat, buffers), optimizer = self.model.weights(), self.optimizer.snapshot()
        # without dropout no member draws from its stream after building
        drawn = bool(self.model.dropout) or not self.model.dropout_found

        def take(member: Member) -> None:
            scheduler = member.job.parts.scheduler
            member.snapshot = Snapshot(
                copy.copy(member.state), flat, buffers, optimizer,
                copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
                member.generator.get_state() if drawn else member.rng["torch"])
        return take

    def write(self, i: int, member: Member) -> None:
        """Write member i's checkpoints that are not on disk yet: last.pt first, then best.pt,
        the order of a run's own writes (a process killed between the two leaves a last.pt
        that names a best step best.pt does not hold yet; when that step is last.pt's own,
        dltrain.training.best_pair repairs best.pt from it)."""
        assert member.checkpoints is not None
        snap, layout = member.snapshot, self.model.layout
        if snap is not None:
            parts = member.job.parts
            weights = row_weights(member, layout, snap.flat[i], buffer_row(snap.buffers, i))
            load_member_state(parts.optimizer, parts.model, snap.optimizer.member_state(i))
            last, _ = member.checkpoints.compose(
                snap.state, weights, parts.optimizer.state_dict(), snap.scheduler, None,
                {**member.rng, "torch": snap.generator})
            member.checkpoints.write(last, None)
            member.snapshot = None
        if member.best_state is not None:
            _, best = member.checkpoints.compose(
                member.best_state,
                row_weights(member, layout, self.best[i], buffer_row(self.best_buffers, i)))
            member.checkpoints.write(None, best)
            member.best_state = None

    def flush(self, every_s: float = 0.0) -> None:
        """Write every member's pending checkpoints, if `every_s` seconds have passed since
        the last time."""
        now = time.perf_counter()
        if now - self.flushed >= every_s:
            for i, member in enumerate(self.members):
                self.write(i, member)
            self.flushed = now

    def flush_due(self) -> None:
        """flush() when `save_every_s` has passed (after a validation)."""
        self.flush(self.save_every_s)
