"""What every probe is given, and the few things probes share: a fixed batch to look at, the
schedule of probe steps, and forward passes that leave the training exactly as it was."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dltrain.data.spec import Data, DataSpec, Split
from dltrain.log import Logger
from dltrain.losses import with_inputs


@dataclass
class ProbeContext:
    """A run's parts as the probes see them (built once by `build_probes`)."""

    model: nn.Module  # the bare model (not a DDP or compiled wrapper): no collectives
    loss: nn.Module
    data: Data
    spec: DataSpec  # the model's view of the data (a binary loss asks for one logit)
    data_cfg: Mapping[str, Any]  # the data's config node, plain: e.g. the periods of sine
    logger: Logger
    run_dir: Path
    every: int  # optimiser steps between probe points
    batch: int  # samples in the fixed probe batch

    def __post_init__(self) -> None:
        # the loss of (out, y, x), as training calls it (dltrain.training.state.Parts.criterion)
        self.criterion = with_inputs(self.loss)

    def probe_batch(self, split: str = "val") -> Split:
        """The first `batch` samples of a split: the same samples at every probe point.

        The training split when it is on the device (`train`), else the validation split.
        """
        source = self.data.train if split == "train" and isinstance(self.data.train, Split) \
            else self.data.val
        return Split(source.x[: self.batch], source.y[: self.batch])

    def due(self, step: int, every: int | None = None) -> bool:
        """Whether optimiser step `step` is a probe point (step 0 is one: the initialisation)."""
        return step % (every or self.every) == 0


@contextlib.contextmanager
def looking(model: nn.Module) -> Iterator[None]:
    """Eval mode and no autograd for a probe's own forward passes, then the mode as it was.

    Eval mode: no dropout draws from the training's random numbers, no batch-norm statistics
    updated, so a probe never changes what training does next.
    """
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def sample_values(values: torch.Tensor, limit: int) -> torch.Tensor:
    """At most `limit` of the values, evenly strided (no random draw), on the host, as float32:
    what a histogram needs of a large tensor."""
    flat = values.detach().flatten()
    if flat.numel() > limit:
        flat = flat[:: -(-flat.numel() // limit)]
    return flat.float().cpu()


def layer_of(module_name: str) -> str:
    """The name a tag uses for a module: its path in the model, `model` for the root."""
    return module_name or "model"
