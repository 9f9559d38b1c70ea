"""A convolutional network: conv blocks, then dense layers on the flattened feature maps.

2-D convolutions for images (C, H, W), 1-D for signals (C, length). The size of the flattened
feature maps follows from the input shape and the blocks, so no shape is ever written down.
For a field target of the input's size (C_out, H, W) the network is fully convolutional: the
blocks keep the map's size (stride 1, "same" padding, no pooling) and a 1x1 convolution gives
the target's channels at every point.
`CNNAutoEncoder` is the encoder–decoder form (task=reconstruction).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models import layers
from dltrain.models.autoencoder import AutoEncoder, bottleneck
from dltrain.models.compat import field_channels, refusal
from dltrain.models.layers import (
    batch_norm,
    conv,
    conv_block,
    conv_out_size,
    dense_block,
    dense_stack,
)


def _refuse_other_data(spec: DataSpec) -> None:
    if spec.kind not in ("image", "signal"):
        raise refusal("cnn", spec, "images or signals",
                      "model=transformer" if spec.kind == "tokens"
                      else "model=mlp or model=resnet")


def conv_stack(spec: DataSpec, channels: Sequence[int], kernel_size: int, stride: int,
               padding: int | None, pooling: str, pool_size: int, activation: str,
               batchnorm: bool) -> tuple[nn.Sequential, list[tuple[int, list[int]]]]:
    """The conv blocks, and the maps they make: (channels, spatial sizes) of the input, then
    after each block. Refuses blocks that shrink the input to nothing."""
    if not channels:
        raise ConfigError("model.channels=[] leaves model=cnn without a convolution; "
                          "give at least one block, e.g. [16,32], or use model=mlp.")
    # "same" padding for odd kernels at stride 1: only the pooling shrinks the maps
    padding = kernel_size // 2 if padding is None else padding
    dims = len(spec.input_shape) - 1
    maps = [(spec.input_shape[0], list(spec.input_shape[1:]))]
    blocks = []
    for i, c_out in enumerate(channels):
        c_in, sizes = maps[-1]
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
        maps.append((c_out, sizes))
    return nn.Sequential(*blocks), maps


class CNN(nn.Module):
    """`channels[i]` filters in conv block i (conv -> [batch norm] -> activation -> pool).

    For a field target (`field_channels`): the blocks without pooling, then a 1x1 conv head.
    """

    # a vectorised stack computes its forward exactly (dltrain/vectorised/model.py)
    stackable = True

    def __init__(self, spec: DataSpec, *, channels: Sequence[int], kernel_size: int,
                 stride: int, padding: int | None, pooling: str, pool_size: int,
                 hidden: Sequence[int] | None, activation: str, dropout: float,
                 batchnorm: bool) -> None:
        super().__init__()
        _refuse_other_data(spec)
        field = field_channels("cnn", spec)
        # pooling shrinks the maps: a field's point-by-point output keeps the input's size
        self.features, maps = conv_stack(spec, channels, kernel_size, stride, padding,
                                         "none" if field else pooling, pool_size, activation,
                                         batchnorm)
        c, sizes = maps[-1]
        if field:
            _keep_size(spec, sizes, hidden)
            self.flatten: nn.Module = nn.Identity()
            self.hidden: nn.Module = nn.Identity()
            self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.head: nn.Module = conv(len(sizes), c, field, 1)
        else:
            self.flatten = nn.Flatten()
            self.hidden, n_in = dense_stack(c * math.prod(sizes), hidden or (), activation,
                                            dropout, batchnorm)
            # with no dense layer, dropout acts on the flattened features
            self.dropout = nn.Dropout(dropout) if dropout > 0 and not hidden else nn.Identity()
            self.head = nn.Linear(n_in, spec.out_features)
        self.target_shape = tuple(spec.target_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.flatten(self.features(x))  # (B, C * prod(spatial)), or maps for a field
        out = self.head(self.dropout(self.hidden(x)))  # (B, out_features) or (B, C_out, ...)
        # a field target without its channel axis, (H, W), from the head's (B, 1, H, W)
        return out.reshape(out.shape[0], *self.target_shape) if self.target_shape else out


def _keep_size(spec: DataSpec, sizes: list[int], hidden: Sequence[int] | None) -> None:
    """Refuse settings that would not give a field target its input's size point by point."""
    if hidden:
        raise ConfigError(f"model.hidden={list(hidden)} puts dense layers after the maps, but "
                          f"the field targets of data={spec.name} come from a 1x1 convolution "
                          "at every point; use model.hidden=[].")
    given = list(spec.input_shape[1:])
    if sizes != given:
        raise ConfigError(f"model=cnn turns the {'x'.join(map(str, given))} inputs of "
                          f"data={spec.name} into {'x'.join(map(str, sizes))} maps, but its "
                          "field targets need the input's size; use model.stride=1, "
                          "model.padding=null and an odd model.kernel_size.")


def _up_block(dims: int, c_in: int, c_out: int, kernel_size: int, size: list[int],
              grows: bool, act: str | None, batchnorm: bool) -> nn.Sequential:
    """[nearest-neighbour upsampling to `size`] -> "same" conv -> [batch norm] -> [activation].

    Upsampling and then convolving, rather than a transposed convolution, reaches any size
    exactly (odd ones too) and leaves no checkerboard pattern (Odena et al., 2016).
    """
    parts: list[tuple[str, nn.Module]] = []
    if grows:
        parts.append(("up", nn.Upsample(size=tuple(size), mode="nearest")))
    parts.append(("conv", conv(dims, c_in, c_out, kernel_size, padding="same",
                               bias=act is None or not batchnorm)))
    if act is not None:
        if batchnorm:
            parts.append(("norm", batch_norm(dims, c_out)))
        parts.append(("act", layers.activation(act)))
    return nn.Sequential(OrderedDict(parts))


class CNNAutoEncoder(AutoEncoder):
    """The CNN's conv blocks (and dense layers) down to a bottleneck of `latent` units, and back
    up in mirror image: dense layers, then one upsampling block per conv block, each restoring
    the size and channels that block was given; the last one gives the input's channels with a
    linear output (task=reconstruction)."""

    def __init__(self, spec: DataSpec, *, channels: Sequence[int], kernel_size: int,
                 stride: int, padding: int | None, pooling: str, pool_size: int,
                 hidden: Sequence[int] | None, activation: str, dropout: float,
                 batchnorm: bool, latent: int | None, variational: bool) -> None:
        _refuse_other_data(spec)
        latent = bottleneck(latent, variational, "cnn", spec)
        features, maps = conv_stack(spec, channels, kernel_size, stride, padding, pooling,
                                    pool_size, activation, batchnorm)
        widths = list(hidden or ())
        c, sizes = maps[-1]
        n_maps = c * math.prod(sizes)
        down, n_features = dense_stack(n_maps, widths, activation, dropout, batchnorm)
        encoder = nn.Sequential(OrderedDict(
            features=features, flatten=nn.Flatten(), hidden=down,
            dropout=nn.Dropout(dropout) if dropout > 0 and not widths else nn.Identity()))
        up, last = dense_stack(latent, widths[::-1], activation, dropout, batchnorm)
        dims = len(spec.input_shape) - 1
        blocks = []
        for i in range(len(channels), 0, -1):  # block i made maps[i] from maps[i - 1]
            (c_in, size_in), (c_out, size_out) = maps[i - 1], maps[i]
            blocks.append(_up_block(dims, c_out, c_in, kernel_size, size_in,
                                    size_in != size_out, activation if i > 1 else None,
                                    batchnorm))
        decoder = nn.Sequential(OrderedDict(
            hidden=up, maps=dense_block(last, n_maps, activation, 0.0, batchnorm),
            unflatten=nn.Unflatten(1, (c, *sizes)), blocks=nn.Sequential(*blocks)))
        super().__init__(encoder, n_features, decoder, latent, variational)
