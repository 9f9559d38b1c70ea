"""DataSpec: the one place where facts of the data meet the model and the loss."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

# Test sets of generated data are drawn from this seed, whatever data.seed is, so that runs
# over different training draws are scored on the same test points.
TEST_SEED = 2_147_483_647


@dataclass(frozen=True)
class DataSpec:
    """What a model and a loss need to know about the data, and nothing else.

    `kind` says how a sample is shaped: "image" (C, H, W), "vector" (features,),
    "signal" (C, length) or "tokens" (a sequence of integer ids). For tokens, `vocab` holds
    the character of every id, so that a saved spec decodes a model's output on its own.
    """

    name: str
    task: str  # classification | regression | language_model | reconstruction | pinn
    kind: str  # image | vector | signal | tokens
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    num_outputs: int | None = None
    vocab_size: int | None = None
    class_names: tuple[str, ...] = field(default_factory=tuple)
    vocab: tuple[str, ...] = field(default_factory=tuple)
    # regression: the shape of one target sample when it is more than a vector of outputs,
    # e.g. (C, H, W) for a field-to-field map; () otherwise (num_outputs says it all)
    target_shape: tuple[int, ...] = field(default_factory=tuple)
    # task=pinn with pde.learn: the coefficients the model learns, with their first values
    # (dltrain.pinn.network: parameters of the model, so a rebuilt model has them)
    learned: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    @property
    def out_features(self) -> int:
        """Width of the model's last layer: classes (or one logit for a binary loss),
        regression outputs, the vocabulary, or every value of the input (reconstruction)."""
        if self.task == "classification":
            return int(self.num_outputs or self.num_classes or 0)
        if self.task == "language_model":
            return int(self.vocab_size or 0)
        if self.task == "reconstruction":
            return math.prod(self.input_shape)
        if self.target_shape:  # a target of several axes: every value of it
            return math.prod(self.target_shape)
        return int(self.num_outputs or 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["class_names"] = list(self.class_names)
        d["vocab"] = list(self.vocab)
        d["target_shape"] = list(self.target_shape)
        d["learned"] = [list(pair) for pair in self.learned]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        d["class_names"] = tuple(d.get("class_names", ()))
        d["vocab"] = tuple(d.get("vocab", ()))
        d["target_shape"] = tuple(d.get("target_shape", ()))
        d["learned"] = tuple((str(n), float(v)) for n, v in d.get("learned", ()))
        return cls(**d)


@dataclass(frozen=True)
class TargetScale:
    """How regression targets were standardised for training: y_train = (y - mean) / std.

    `mean` and `std` broadcast against a batch of targets ((1, outputs) for vectors, (1, C, 1,
    1) for fields). Every reported metric is computed on `restore(y)`, in the data's own units;
    the statistics are saved with the run so that predictions come back in those units.
    """

    mean: torch.Tensor
    std: torch.Tensor

    def restore(self, y: torch.Tensor) -> torch.Tensor:
        """Standardised targets (or predictions) back in the data's units."""
        return y * self.std.to(y.device, y.dtype) + self.mean.to(y.device, y.dtype)

    def to_dict(self) -> dict[str, list]:
        return {"mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> TargetScale:
        return cls(torch.tensor(d["mean"], dtype=torch.float32),
                   torch.tensor(d["std"], dtype=torch.float32))


@dataclass
class Split:
    """One split of a data set, resident on the training device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class HostSplit:
    """A training split left on the host and read batch by batch (`data.in_memory=false`).

    `x` holds the raw samples of a whole file (an array, or a read-only memory map of the
    file, so the split need not fit in memory); `index` says which of them form the split.
    A batch becomes `((x[idx] / scale) - mean) / std` on `device`, per channel.
    """

    x: np.ndarray  # (N, C, H, W) raw values, e.g. uint8 pixels
    y: np.ndarray  # (N,) int64 labels
    index: np.ndarray  # (n,) rows of x and y that belong to the split
    scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]
    device: str
    workers: int  # DataLoader worker processes (data.workers)

    def __len__(self) -> int:
        return len(self.index)


@dataclass(frozen=True)
class Shard:
    """One process's share of every global batch: its rows index, index + count, ..."""

    index: int = 0
    count: int = 1

    @property
    def rows(self) -> slice:
        return slice(self.index, None, self.count)


WHOLE = Shard()  # one process: the whole batch


# An augmentation: (this process's shard of a batch on the device, a generator on the same
# device, which shard it is) -> the augmented shard, as the whole batch's augmentation has it.
Augmentation = Callable[[torch.Tensor, torch.Generator, Shard], torch.Tensor]


@dataclass
class Data:
    """Train, validation and test splits, their spec, and the input normalisation (from train).

    `tokens` is the training text as one stream of ids (language models draw random windows
    from it; `train` then holds its consecutive windows). `augment` is applied to training
    batches only, on their device. `test_labels` are the test split's own targets when the
    task has replaced them (reconstruction): what pictures of the test set are coloured by.
    """

    train: Split | HostSplit
    val: Split
    test: Split
    spec: DataSpec
    norm: dict[str, list[float]] = field(default_factory=dict)
    tokens: torch.Tensor | None = None
    augment: Augmentation | None = None
    test_labels: torch.Tensor | None = None
    target_scale: TargetScale | None = None  # regression targets standardised for training
    # what the reader of the user's own files decided and keeps with the run: the task and
    # why, categories of one-hot columns, rows dropped for missing values (run.json, summary)
    facts: dict[str, Any] = field(default_factory=dict)
