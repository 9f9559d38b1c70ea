"""The lectures' small synthetic data sets: 2-D classification and 1-D regression.

Each maker draws `n` samples from a seeded `torch.Generator` and returns (x, y): x is float32
(n, features); y is int64 class labels (n,) or float32 targets (n, 1). A maker's shape
parameters have no defaults here: they are keys of its conf/data/ option, defaulted there.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def _balanced_labels(n: int, classes: int, gen: torch.Generator) -> torch.Tensor:
    """n labels with every class (almost) equally often, in random order."""
    labels = torch.arange(n) % classes
    return labels[torch.randperm(n, generator=gen)]


def moons(n: int, noise: float, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Two interleaving half circles (as scikit-learn's make_moons)."""
    y = _balanced_labels(n, 2, gen)
    t = math.pi * torch.rand(n, generator=gen)
    upper = torch.stack([t.cos(), t.sin()], dim=1)
    lower = torch.stack([1 - t.cos(), 0.5 - t.sin()], dim=1)
    x = torch.where(y.unsqueeze(1) == 0, upper, lower)
    return x + noise * torch.randn(n, 2, generator=gen), y


def circles(n: int, noise: float, gen: torch.Generator, factor: float
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """An outer circle (class 0) around an inner one of radius `factor` (class 1)."""
    y = _balanced_labels(n, 2, gen)
    t = 2 * math.pi * torch.rand(n, generator=gen)
    radius = torch.where(y == 0, 1.0, factor)
    x = torch.stack([t.cos(), t.sin()], dim=1) * radius.unsqueeze(1)
    return x + noise * torch.randn(n, 2, generator=gen), y


def spirals(n: int, noise: float, gen: torch.Generator, classes: int, turns: float
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """`classes` spiral arms; `noise` perturbs the angle (radians)."""
    y = _balanced_labels(n, classes, gen)
    r = torch.rand(n, generator=gen)
    angle = (2 * math.pi * (turns * r + y / classes)
             + noise * torch.randn(n, generator=gen))
    x = torch.stack([r * angle.cos(), r * angle.sin()], dim=1)
    return x, y


def blobs(n: int, noise: float, gen: torch.Generator, classes: int
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Isotropic Gaussian blobs of std `noise`, centred evenly on a circle of radius 3."""
    y = _balanced_labels(n, classes, gen)
    phi = 2 * math.pi * y / classes
    centres = 3.0 * torch.stack([phi.cos(), phi.sin()], dim=1)
    return centres + noise * torch.randn(n, 2, generator=gen), y


def sine_truth(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x)


def sine(n: int, noise: float, gen: torch.Generator, periods: float
         ) -> tuple[torch.Tensor, torch.Tensor]:
    """y = sin(x) + noise, x uniform over `periods` periods centred on 0."""
    half = periods * math.pi
    x = (2 * torch.rand(n, 1, generator=gen) - 1) * half
    return x, sine_truth(x) + noise * torch.randn(n, 1, generator=gen)


def poly_truth(x: torch.Tensor, coefficients: list[float]) -> torch.Tensor:
    return sum(c * x**k for k, c in enumerate(coefficients))  # type: ignore[return-value]


def poly(n: int, noise: float, gen: torch.Generator, coefficients: Sequence[float],
         x_range: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """y = sum_k c_k x^k + noise, x uniform in `x_range`."""
    lo, hi = x_range
    x = lo + (hi - lo) * torch.rand(n, 1, generator=gen)
    return x, poly_truth(x, list(coefficients)) + noise * torch.randn(n, 1, generator=gen)
