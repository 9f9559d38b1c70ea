"""Residual networks (He et al. 2016): every block learns a correction F(x) added to x.

The identity path lets gradients pass through any depth unchanged, so a deep ResNet trains
where a plain network of the same depth stalls. For images (and 1-D signals) a conv ResNet:
a stem, then stages of basic blocks, each stage after the first halving the resolution and
growing the channels; for vectors a residual MLP of `depth` blocks of `width` units, so the
"deep plain net vs ResNet" comparison runs on 2-D points too.

For a field target of the input's size (C_out, H, W) the conv ResNet keeps the resolution (no
stem pool, every stage at stride 1, no global pool) and a 1x1 convolution gives the target's
channels at every point; for vectors the head's outputs are reshaped to the target's shape.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.compat import data_phrase, field_channels, refusal
from dltrain.models.layers import activation as make_activation
from dltrain.models.layers import batch_norm, conv, global_avg_pool, max_pool


class ResidualBlock(nn.Module):
    """act(branch(x) + shortcut(x)): the shortcut is the identity unless the shape changes."""

    # a vectorised stack computes its forward exactly (dltrain/vectorised/model.py)
    stackable = True

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module, act: str) -> None:
        super().__init__()
        self.branch = branch
        self.shortcut = shortcut
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.branch(x) + self.shortcut(x))


def _norm(dims: int, channels: int, batchnorm: bool) -> nn.Module:
    return batch_norm(dims, channels) if batchnorm else nn.Identity()


def conv_residual(dims: int, c_in: int, c_out: int, stride: int, act: str, batchnorm: bool,
                  dropout: float) -> ResidualBlock:
    """The basic block: two 3x3 convolutions with batch norm; a 1x1 projection on the
    shortcut where the block changes the number of channels or the resolution."""
    branch = nn.Sequential(OrderedDict([
        ("conv1", conv(dims, c_in, c_out, 3, stride, 1, bias=not batchnorm)),
        ("norm1", _norm(dims, c_out, batchnorm)),
        ("act1", make_activation(act)),
        ("dropout", nn.Dropout(dropout) if dropout > 0 else nn.Identity()),
        ("conv2", conv(dims, c_out, c_out, 3, 1, 1, bias=not batchnorm)),
        ("norm2", _norm(dims, c_out, batchnorm)),
    ]))
    shortcut: nn.Module = nn.Identity()
    if stride != 1 or c_in != c_out:
        shortcut = nn.Sequential(OrderedDict([
            ("conv", conv(dims, c_in, c_out, 1, stride, 0, bias=not batchnorm)),
            ("norm", _norm(dims, c_out, batchnorm)),
        ]))
    return ResidualBlock(branch, shortcut, act)


def dense_residual(width: int, act: str, batchnorm: bool, dropout: float) -> ResidualBlock:
    """The basic block of a residual MLP: two linear layers with batch norm."""
    branch = nn.Sequential(OrderedDict([
        ("linear1", nn.Linear(width, width, bias=not batchnorm)),
        ("norm1", _norm(1, width, batchnorm)),
        ("act1", make_activation(act)),
        ("dropout", nn.Dropout(dropout) if dropout > 0 else nn.Identity()),
        ("linear2", nn.Linear(width, width, bias=not batchnorm)),
        ("norm2", _norm(1, width, batchnorm)),
    ]))
    return ResidualBlock(branch, nn.Identity(), act)


class ResNet(nn.Module):
    """A conv ResNet for images and signals, a residual MLP for vectors."""

    # a vectorised stack computes its forward exactly (dltrain/vectorised/model.py)
    stackable = True

    def __init__(self, spec: DataSpec, *, channels: Sequence[int], blocks: int, stem_pool: bool,
                 width: int, depth: int, activation: str, dropout: float,
                 batchnorm: bool) -> None:
        super().__init__()
        if spec.kind == "tokens":
            raise refusal("resnet", spec, "images, signals or vectors", "model=transformer")
        if spec.kind == "vector":
            self.stem = nn.Sequential(OrderedDict([
                ("linear", nn.Linear(spec.input_shape[0], width, bias=not batchnorm)),
                ("norm", _norm(1, width, batchnorm)),
                ("act", make_activation(activation)),
            ]))
            # one stage, so that a block is named stages.0.i as in the conv ResNet
            self.stages = nn.Sequential(nn.Sequential(
                *(dense_residual(width, activation, batchnorm, dropout) for _ in range(depth))))
            self.pool: nn.Module = nn.Identity()
            self.head: nn.Module = nn.Linear(width, spec.out_features)
        else:
            if not channels:
                raise ConfigError("model.channels=[] leaves model=resnet without a stage; "
                                  "give at least one, e.g. [16,32,64].")
            if blocks < 1:
                raise ConfigError(f"model.blocks={blocks} leaves the stages of model=resnet "
                                  "empty; use at least 1 block per stage.")
            dims = len(spec.input_shape) - 1
            # a field target keeps the input's resolution throughout: nothing halves it
            field = field_channels("resnet", spec)
            stem_pool = stem_pool and not field
            if stem_pool and min(spec.input_shape[1:]) < 2:
                raise ConfigError(f"model.stem_pool=true cannot halve the {data_phrase(spec)} "
                                  f"of data={spec.name}; use model.stem_pool=false.")
            self.stem = nn.Sequential(OrderedDict([
                ("conv", conv(dims, spec.input_shape[0], channels[0], 3, 1, 1,
                              bias=not batchnorm)),
                ("norm", _norm(dims, channels[0], batchnorm)),
                ("act", make_activation(activation)),
                # halving the resolution before the first stage, as the paper's stem does,
                # quarters the cost of that stage (the most expensive one)
                ("pool", max_pool(dims, 2) if stem_pool else nn.Identity()),
            ]))
            stages, c_in = [], channels[0]
            for i, c_out in enumerate(channels):
                stage = [conv_residual(dims, c_in if j == 0 else c_out, c_out,
                                       2 if i > 0 and j == 0 and not field else 1,
                                       activation, batchnorm,
                                       dropout)
                         for j in range(blocks)]
                stages.append(nn.Sequential(*stage))
                c_in = c_out
            self.stages = nn.Sequential(*stages)
            if field:
                self.pool = nn.Identity()
                self.head = conv(dims, c_in, field, 1, bias=True)
            else:
                self.pool = global_avg_pool(dims)
                self.head = nn.Linear(c_in, spec.out_features)
        self.target_shape = tuple(spec.target_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x)))  # (B, n_features), or maps for a field
        out = self.head(features)  # (B, out_features), or (B, C_out, *spatial)
        return out.reshape(out.shape[0], *self.target_shape) if self.target_shape else out

