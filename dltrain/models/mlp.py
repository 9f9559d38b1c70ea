"""The multilayer perceptron of the universal approximation theorem."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.models.compat import refusal
from dltrain.models.layers import dense_block


class MLP(nn.Module):
    """Dense layers on the flattened input: `hidden` widths, or `depth` layers of `width`."""

    def __init__(self, spec: DataSpec, hidden: Sequence[int] | None = None, depth: int = 2,
                 width: int = 256, activation: str = "relu", dropout: float = 0.0,
                 batchnorm: bool = False) -> None:
        super().__init__()
        if spec.kind == "tokens":
            raise refusal("mlp", spec, "images, vectors or signals", "model=transformer")
        widths = list(hidden) if hidden is not None else [width] * depth
        n_in = math.prod(spec.input_shape)
        blocks = []
        for n_out in widths:
            blocks.append(dense_block(n_in, n_out, activation, dropout, batchnorm))
            n_in = n_out
        self.flatten = nn.Flatten()
        self.hidden = nn.Sequential(*blocks)
        self.head = nn.Linear(n_in, spec.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.hidden(self.flatten(x)))  # (B, out_features)
