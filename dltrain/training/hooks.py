"""Named points of the training loop where diagnostics ("probes") look in.

fit() calls `start` before the first step of a fresh run (step 0: the network at its
initialisation), `step` after every optimiser step (the gradients of that step are still in
`.grad`), `validated` after each validation, and `end` after the last step of a completed run
(with the final weights, before the test). A hook must be cheap when it has nothing to do: it
is called every step. Hooks never change the training: they may run their own forward passes
(in eval mode, under no_grad) but must not touch the random state the training draws from.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from dltrain.training.state import TrainState


class Hooks(Protocol):
    def start(self, state: TrainState) -> None: ...

    def step(self, state: TrainState) -> None: ...

    def validated(self, state: TrainState, metrics: Mapping[str, float]) -> None: ...

    def end(self, state: TrainState) -> None: ...


class NoHooks:
    """The loop without diagnostics."""

    def start(self, state: TrainState) -> None:
        pass

    def step(self, state: TrainState) -> None:
        pass

    def validated(self, state: TrainState, metrics: Mapping[str, float]) -> None:
        pass

    def end(self, state: TrainState) -> None:
        pass


NO_HOOKS = NoHooks()


class HookList(NoHooks):
    """Calls each of several hooks in turn."""

    def __init__(self, hooks: Sequence[Hooks]) -> None:
        self.hooks = list(hooks)

    def start(self, state: TrainState) -> None:
        for hook in self.hooks:
            hook.start(state)

    def step(self, state: TrainState) -> None:
        for hook in self.hooks:
            hook.step(state)

    def validated(self, state: TrainState, metrics: Mapping[str, float]) -> None:
        for hook in self.hooks:
            hook.validated(state, metrics)

    def end(self, state: TrainState) -> None:
        for hook in self.hooks:
            hook.end(state)
