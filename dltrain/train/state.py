"""What the training loop is given (settings, parts) and what it advances (state)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from dltrain.losses import monitor_metric
from dltrain.optim import Penalty


@dataclass(frozen=True)
class Settings:
    """The trainer's knobs, read once from `cfg.trainer`."""

    max_epochs: int
    max_steps: int | None
    log_every: int
    val_every: int
    precision: str  # "32" | "bf16" | "16"
    monitor: str  # e.g. "val/accuracy"
    mode: str  # "min" | "max"
    eval_batch_size: int

    @classmethod
    def from_cfg(cls, trainer: DictConfig, task: str, batch_size: int) -> Settings:
        monitor, mode = monitor_metric(task, str(trainer.get("monitor", "auto")))
        return cls(
            max_epochs=int(trainer.max_epochs),
            max_steps=None if trainer.max_steps is None else int(trainer.max_steps),
            log_every=int(trainer.log_every),
            val_every=int(trainer.val_every),
            precision=str(trainer.precision),
            monitor=monitor,
            mode=mode,
            eval_batch_size=max(4 * batch_size, 256),
        )

    def total_steps(self, steps_per_epoch: int) -> int:
        """Optimiser steps of the whole run: the schedules' length."""
        by_epochs = self.max_epochs * steps_per_epoch
        return by_epochs if self.max_steps is None else min(by_epochs, self.max_steps)


@dataclass
class Parts:
    """The objects a run trains: built once by `run`, used by `fit`."""

    model: nn.Module  # whose weights are saved
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, compiled or not
    loss: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # an LRScheduler or None
    scaler: torch.amp.GradScaler | None = None
    penalties: list[Penalty] = field(default_factory=list)


@dataclass
class TrainState:
    """Where training stands: everything a checkpoint needs beyond the objects' own states."""

    step: int = 0  # optimiser steps done
    epoch: int = 0  # epochs completed
    batch: int = 0  # batches consumed of the current epoch
    samples: int = 0  # training samples seen
    train_s: float = 0.0  # seconds spent in the step loop (for samples/s)
    best_value: float | None = None
    best_step: int | None = None
    best_val: dict[str, float] = field(default_factory=dict)  # val metrics at the best step
    last_val: dict[str, float] = field(default_factory=dict)

    def improved(self, value: float, mode: str) -> bool:
        if self.best_value is None:
            return True
        return value > self.best_value if mode == "max" else value < self.best_value

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**d)
