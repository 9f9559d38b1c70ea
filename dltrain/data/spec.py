"""DataSpec: the one place where facts of the data meet the model and the loss."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class DataSpec:
    """What a model and a loss need to know about the data, and nothing else.

    `kind` says how a sample is shaped: "image" (C, H, W), "vector" (features,),
    "signal" (C, length) or "tokens" (a sequence of integer ids).
    """

    name: str
    task: str  # classification | regression | language_model | reconstruction
    kind: str  # image | vector | signal | tokens
    input_shape: tuple[int, ...]
    num_classes: int | None = None
    num_outputs: int | None = None
    vocab_size: int | None = None
    class_names: tuple[str, ...] = field(default_factory=tuple)

    @property
    def out_features(self) -> int:
        """Width of the model's last layer: classes (or one logit for a binary loss),
        regression outputs, or the vocabulary."""
        if self.task == "classification":
            return int(self.num_outputs or self.num_classes or 0)
        if self.task == "language_model":
            return int(self.vocab_size or 0)
        return int(self.num_outputs or 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["input_shape"] = list(self.input_shape)
        d["class_names"] = list(self.class_names)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSpec:
        d = dict(d)
        d["input_shape"] = tuple(d["input_shape"])
        d["class_names"] = tuple(d.get("class_names", ()))
        return cls(**d)


@dataclass
class Split:
    """One split of a data set, resident on the training device."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Data:
    """Train, validation and test splits, their spec, and the input normalisation (from train)."""

    train: Split
    val: Split
    test: Split
    spec: DataSpec
    norm: dict[str, list[float]] = field(default_factory=dict)
