"""What a model that declares its own training step is given (dltrain.training.steps picks
such a step): here, below the trainer, so that the models that declare one need not import it."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class StepTools:
    """What a model that declares its own training step (`model.training_step(x, y, tools)`,
    returning the loss to log, detached) is given: the run's loss, optimiser(s), precision and
    clipping, and trainer.d_steps. A model of named parts (`optim_parts`) has one optimiser
    per part, stepped and cleared by name; a model of one part passes None."""

    optimizer: torch.optim.Optimizer
    loss: torch.nn.Module
    amp: contextlib.AbstractContextManager
    clip: Callable[[list[torch.Tensor]], None]
    repeats: int  # trainer.d_steps: a GAN's discriminator steps per generator step

    def update(self, part: str | None) -> None:
        """Step the optimiser of `part` (None: the only one)."""
        if part is None:
            self.optimizer.step()
        else:  # through the optimiser's own step, which a schedule watches
            self.optimizer.step(part=part)  # type: ignore[call-arg]

    def zero_grad(self, part: str | None) -> None:
        if part is None:
            self.optimizer.zero_grad(set_to_none=True)
        else:
            self.optimizer.zero_grad(set_to_none=True, part=part)  # type: ignore[call-arg]
