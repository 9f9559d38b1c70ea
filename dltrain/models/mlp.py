"""The multilayer perceptron of the universal approximation theorem, and its autoencoder."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.models.autoencoder import AutoEncoder, bottleneck
from dltrain.models.compat import refusal
from dltrain.models.layers import dense_block, dense_stack


class MLP(nn.Module):
    """Dense layers on the flattened input: `hidden` widths, or `depth` layers of `width`.

    A regression target of several axes (a field, a matrix) is every one of its values from
    the head, reshaped to the target's shape.
    """

    # a vectorised stack computes its forward exactly (dltrain/vectorised/model.py)
    stackable = True

    def __init__(self, spec: DataSpec, *, hidden: Sequence[int] | None, depth: int, width: int,
                 activation: str, dropout: float, batchnorm: bool) -> None:
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
        self.target_shape = tuple(spec.target_shape)
        self.head = nn.Linear(n_in, spec.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.head(self.hidden(self.flatten(x)))  # (B, out_features)
        # a reshape, not a layer: the stack's table computes the forward exactly
        return out.reshape(out.shape[0], *self.target_shape) if self.target_shape else out


class MLPAutoEncoder(AutoEncoder):
    """The MLP's layers down to a bottleneck of `latent` units, and back up in mirror image:
    input -> hidden widths -> latent -> hidden widths reversed -> input (task=reconstruction).
    """

    def __init__(self, spec: DataSpec, *, hidden: Sequence[int] | None, depth: int, width: int,
                 activation: str, dropout: float, batchnorm: bool, latent: int | None,
                 variational: bool) -> None:
        if spec.kind == "tokens":
            raise refusal("mlp", spec, "images, vectors or signals", "task=null")
        latent = bottleneck(latent, variational, "mlp", spec)
        widths = list(hidden) if hidden is not None else [width] * depth
        n_in = math.prod(spec.input_shape)
        down, features = dense_stack(n_in, widths, activation, dropout, batchnorm)
        up, last = dense_stack(latent, widths[::-1], activation, dropout, batchnorm)
        encoder = nn.Sequential(OrderedDict(flatten=nn.Flatten(), hidden=down))
        # a linear output: the inputs are standardised, so any real value can be a target
        decoder = nn.Sequential(OrderedDict(hidden=up, out=nn.Linear(last, n_in),
                                            unflatten=nn.Unflatten(1, spec.input_shape)))
        super().__init__(encoder, features, decoder, latent, variational)
