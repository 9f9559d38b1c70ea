"""Small building blocks shared by the model families."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import nn

# Names are the config's (dltrain.config.ACTIVATIONS); a test keeps the two in step.
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def activation(name: str) -> nn.Module:
    return ACTIVATIONS[name]()


def dense_block(n_in: int, n_out: int, act: str, dropout: float = 0.0,
                batchnorm: bool = False) -> nn.Sequential:
    """Linear -> [BatchNorm] -> activation -> [Dropout], with named parts for the probes."""
    parts: list[tuple[str, nn.Module]] = [("linear", nn.Linear(n_in, n_out, bias=not batchnorm))]
    if batchnorm:
        parts.append(("norm", nn.BatchNorm1d(n_out)))
    parts.append(("act", activation(act)))
    if dropout > 0:
        parts.append(("dropout", nn.Dropout(dropout)))
    return nn.Sequential(OrderedDict(parts))


def dense_stack(n_in: int, widths: Sequence[int], act: str, dropout: float = 0.0,
                batchnorm: bool = False) -> tuple[nn.Sequential, int]:
    """Dense blocks of `widths` after `n_in` inputs, and the width they end with."""
    blocks = []
    for n_out in widths:
        blocks.append(dense_block(n_in, n_out, act, dropout, batchnorm))
        n_in = n_out
    return nn.Sequential(*blocks), n_in


# Convolutions of any spatial rank: 1 for signals (C, length), 2 for images (C, H, W).
_CONV: dict[int, type[nn.Module]] = {1: nn.Conv1d, 2: nn.Conv2d}
_BATCHNORM: dict[int, type[nn.Module]] = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
# Names are the config's (dltrain.config.POOLINGS, which adds "none"); a test keeps them in step.
POOLS: dict[str, dict[int, type[nn.Module]]] = {
    "max": {1: nn.MaxPool1d, 2: nn.MaxPool2d},
    "avg": {1: nn.AvgPool1d, 2: nn.AvgPool2d},
}
_GLOBAL_POOL: dict[int, type[nn.Module]] = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


def conv(dims: int, c_in: int, c_out: int, kernel_size: int, stride: int = 1,
         padding: int | str = 0, bias: bool = True) -> nn.Module:
    """A convolution of `dims` spatial axes; padding="same" keeps the size at stride 1."""
    return _CONV[dims](c_in, c_out, kernel_size, stride=stride, padding=padding, bias=bias)


def batch_norm(dims: int, channels: int) -> nn.Module:
    """Batch norm over the channels of a (B, C, *spatial) tensor; dims=1 also fits (B, C)."""
    return _BATCHNORM[dims](channels)


def global_avg_pool(dims: int) -> nn.Sequential:
    """(B, C, *spatial) -> (B, C): the mean of every channel."""
    return nn.Sequential(_GLOBAL_POOL[dims](1), nn.Flatten())


def max_pool(dims: int, size: int) -> nn.Module:
    return POOLS["max"][dims](size)


def conv_out_size(size: int, kernel_size: int, stride: int, padding: int) -> int:
    """Length of one spatial axis after a convolution (PyTorch's floor formula)."""
    return (size + 2 * padding - kernel_size) // stride + 1


def conv_block(dims: int, c_in: int, c_out: int, kernel_size: int, stride: int, padding: int,
               act: str, batchnorm: bool, pooling: str, pool_size: int) -> nn.Sequential:
    """Conv -> [BatchNorm] -> activation -> [pool], with named parts for the probes."""
    parts: list[tuple[str, nn.Module]] = [
        ("conv", conv(dims, c_in, c_out, kernel_size, stride, padding, bias=not batchnorm))]
    if batchnorm:
        parts.append(("norm", batch_norm(dims, c_out)))
    parts.append(("act", activation(act)))
    if pooling != "none":
        parts.append(("pool", POOLS[pooling][dims](pool_size)))
    return nn.Sequential(OrderedDict(parts))
