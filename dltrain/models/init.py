"""Weight initialisation schemes of the lecture, applied to linear and convolution weights.

With fan_in N_in and fan_out N_out of a layer, weights are drawn from a zero-mean normal with
  lecun:   Var(w) = 1 / N_in
  xavier:  Var(w) = 2 / (N_in + N_out)   (Glorot & Bengio)
  kaiming: Var(w) = 2 / N_in             (He et al., for ReLU)
  normal:  std(w) = init.std
and orthogonal draws a (scaled-by-1) orthogonal matrix. Biases start at zero. `default` keeps
PyTorch's own initialisation.
"""

from __future__ import annotations

import math

from torch import nn

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def fans(weight) -> tuple[int, int]:
    """(fan_in, fan_out) of a linear (out, in) or convolution (out, in, *kernel) weight."""
    receptive = math.prod(weight.shape[2:]) if weight.ndim > 2 else 1
    return weight.shape[1] * receptive, weight.shape[0] * receptive


def apply_init(model: nn.Module, scheme: str, std: float | None = None) -> None:
    """Re-initialise every linear and convolution layer of `model` in place.

    `std` is the scale of `normal` (init.std), the one scheme that has no formula for it.
    """
    if scheme == "default":
        return
    if scheme == "normal" and std is None:
        raise ValueError("init=normal needs its std (init.std)")
    for module in model.modules():
        if not isinstance(module, _LAYERS):
            continue
        w = module.weight
        fan_in, fan_out = fans(w)
        if scheme == "orthogonal":
            nn.init.orthogonal_(w)
        else:
            sd = {
                "lecun": math.sqrt(1.0 / fan_in),
                "xavier": math.sqrt(2.0 / (fan_in + fan_out)),
                "kaiming": math.sqrt(2.0 / fan_in),
                "normal": std,
            }[scheme]
            nn.init.normal_(w, 0.0, sd)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
