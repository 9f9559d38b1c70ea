"""Small building blocks shared by the model families."""

from __future__ import annotations

from collections import OrderedDict

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
