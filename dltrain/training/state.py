"""What the training loop is given (settings, parts) and what it advances (state)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from dltrain.data.batches import Batches
from dltrain.data.spec import Data, DataSpec
from dltrain.losses import monitor_metric, with_inputs
from dltrain.optim import Penalty


@dataclass(frozen=True)
class Settings:
    """The trainer's knobs, read once from `cfg.trainer`."""

    max_epochs: int
    max_steps: int | None
    log_every: int  # optimiser steps between log points
    val_every: int
    precision: str  # "32" | "bf16" | "16"
    monitor: str  # e.g. "val/accuracy"
    mode: str  # "min" | "max"
    eval_batch_size: int
    accumulate: int = 1  # micro-batches per optimiser step
    clip_norm: float | None = None
    clip_value: float | None = None
    patience: int | None = None  # early stopping: validations without improvement
    min_delta: float = 0.0
    nan_policy: str = "stop"  # "stop" | "skip"
    d_steps: int = 1  # a model with a declared step (a GAN): discriminator steps per step

    @classmethod
    def from_cfg(cls, trainer: Mapping[str, Any], task: str, batch_size: int) -> Settings:
        """Read from the `trainer` node (a plain mapping; its defaults are conf/'s)."""
        monitor, mode = monitor_metric(task, str(trainer["monitor"]))
        clip, early = trainer["grad_clip"], trainer["early_stopping"]
        return cls(
            max_epochs=int(trainer["max_epochs"]),
            max_steps=None if trainer["max_steps"] is None else int(trainer["max_steps"]),
            log_every=int(trainer["log_every"]),
            val_every=int(trainer["val_every"]),
            precision=str(trainer["precision"]),
            monitor=monitor,
            mode=mode,
            # Evaluation at the training batch size: its peak memory then stays below the
            # training step's (no activations kept for a backward pass); larger batches
            # evaluate a little faster and can cost a lot more (attention, big images).
            eval_batch_size=int(trainer["eval_batch_size"] or batch_size),
            accumulate=int(trainer["accumulate"]),
            clip_norm=clip["max_norm"],
            clip_value=clip["value"],
            patience=early["patience"],
            min_delta=float(early["min_delta"]),
            nan_policy=str(trainer["nan_policy"]),
            d_steps=int(trainer["d_steps"]),
        )

    def total_steps(self, batches_per_epoch: int) -> int:
        """Optimiser steps of the whole run: the schedules' length."""
        by_epochs = self.max_epochs * (batches_per_epoch // self.accumulate)
        return by_epochs if self.max_steps is None else min(by_epochs, self.max_steps)


@dataclass
class Parts:
    """The objects a run trains: built once by `run`, used by `fit`."""

    model: nn.Module  # whose weights are saved
    forward: Callable[[torch.Tensor], torch.Tensor]  # the model, compiled or not
    loss: nn.Module
    optimizer: torch.optim.Optimizer | None  # None when only evaluating
    scheduler: Any  # an LRScheduler, ReduceLROnPlateau, or None
    scaler: torch.amp.GradScaler | None = None
    penalties: list[Penalty] = field(default_factory=list)
    # Evaluation's forward when it differs from training's: the bare model under DDP, whose
    # wrapper would otherwise call collectives that only this rank takes part in.
    eval_forward: Callable[[torch.Tensor], torch.Tensor] | None = None
    # the loss as a function of (out, y, x): the inputs handed over only where it asks for
    # them (a physics-informed term); decided once here, for the steps and every evaluation
    criterion: Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor] = field(init=False)
    # A split's evaluation where the task scores what the model makes rather than its loss
    # batch by batch (task=generation: the fid of its samples); None: the loss and metrics.
    scorer: Callable[[Any], dict[str, float]] | None = None

    def __post_init__(self) -> None:
        self.criterion = with_inputs(self.loss)


@dataclass
class Job:
    """Everything a run builds from its config before training (dltrain.job.build_job)."""

    data: Data
    spec: DataSpec  # the model's view of the data (a binary loss asks for one logit)
    parts: Parts
    settings: Settings
    batches: Batches
    total_steps: int  # optimiser steps of the whole run: the schedule's length
    device: torch.device


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
    skipped: int = 0  # steps not taken because of a non-finite loss (nan_policy=skip)
    stale: int = 0  # validations since the monitored metric last improved by min_delta
    reference: float | None = None  # the value that improvement is measured against
    stopped_early: bool = False

    def improved(self, value: float, mode: str) -> bool:
        return self._better(value, self.best_value, mode, 0.0)

    @staticmethod
    def _better(value: float, than: float | None, mode: str, delta: float) -> bool:
        if than is None:
            return True
        return value > than + delta if mode == "max" else value < than - delta

    def note_progress(self, value: float, settings: Settings) -> bool:
        """Track improvement for early stopping; True when patience has run out."""
        if self._better(value, self.reference, settings.mode, settings.min_delta):
            self.reference, self.stale = value, 0
        else:
            self.stale += 1
        return settings.patience is not None and self.stale >= settings.patience

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**d)
