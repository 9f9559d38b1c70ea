"""A convolutional network: conv blocks, then dense layers on the flattened feature maps.

2-D convolutions for images (C, H, W), 1-D for signals (C, length). The size of the flattened
feature maps follows from the input shape and the blocks, so no shape is ever written down.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.compat import refusal
from dltrain.models.layers import conv_block, conv_out_size, dense_block


class CNN(nn.Module):
    """`channels[i]` filters in conv block i (conv -> [batch norm] -> activation -> pool)."""

    def __init__(self, spec: DataSpec, channels: Sequence[int] = (16, 32), kernel_size: int = 3,
                 stride: int = 1, padding: int | None = None, pooling: str = "max",
                 pool_size: int = 2, hidden: Sequence[int] | None = None,
                 activation: str = "relu", dropout: float = 0.0,
                 batchnorm: bool = False) -> None:
        super().__init__()
        if spec.kind not in ("image", "signal"):
            raise refusal("cnn", spec, "images or signals",
                          "model=transformer" if spec.kind == "tokens"
                          else "model=mlp or model=resnet")
        if not channels:
            raise ConfigError("model.channels=[] leaves model=cnn without a convolution; "
                              "give at least one block, e.g. [16,32], or use model=mlp.")
        # "same" padding for odd kernels at stride 1: only the pooling shrinks the maps
        padding = kernel_size // 2 if padding is None else padding
        dims = len(spec.input_shape) - 1
        c_in, sizes = spec.input_shape[0], list(spec.input_shape[1:])
        blocks = []
        for i, c_out in enumerate(channels):
            blocks.append(conv_block(dims, c_in, c_out, kernel_size, stride, padding, activation,
                                     batchnorm, pooling, pool_size))
            sizes = [conv_out_size(s, kernel_size, stride, padding) for s in sizes]
            if pooling != "none":
                sizes = [s // pool_size for s in sizes]
            if min(sizes) < 1:
                raise ConfigError(
                    f"model=cnn shrinks the {'x'.join(map(str, spec.input_shape[1:]))} inputs "
                    f"of data={spec.name} to nothing in conv block {i + 1}; use fewer "
                    "model.channels, a smaller model.stride or model.pooling=none.")
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.flatten = nn.Flatten()
        n_in = c_in * math.prod(sizes)
        dense = []
        for n_out in hidden or ():
            dense.append(dense_block(n_in, n_out, activation, dropout, batchnorm))
            n_in = n_out
        self.hidden = nn.Sequential(*dense)
        # with no dense layer, dropout acts on the flattened features
        self.dropout = nn.Dropout(dropout) if dropout > 0 and not dense else nn.Identity()
        self.head = nn.Linear(n_in, spec.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.features(x))  # (B, C * prod(spatial))
        return self.head(self.dropout(self.hidden(x)))  # (B, out_features)
