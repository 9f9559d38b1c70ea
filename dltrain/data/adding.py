"""data=adding: the adding problem (Hochreiter & Schmidhuber 1997), the lecture's test of a
recurrent net's memory.

A sample is a sequence of `length` steps of two channels: a value drawn uniformly from [0, 1],
and a marker that is 1 at exactly two steps (one in the first half of the sequence, one in the
second) and 0 elsewhere. The target is the sum of the two marked values. The first marked value
lies at least length/2 steps before the end, so a net that reads the sequence must carry it that
far in its state.

A net that learned nothing predicts the mean target and scores its variance, 2 * 1/12 ≈ 0.167
(plus data.noise²): `mean_guess_mse` reports it beside the test mse (summary.json).
"""

from __future__ import annotations

import torch


def adding(n: int, noise: float, gen: torch.Generator, length: int
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, 2, length) float32: values and markers; y (n, 1): the sum of the marked values,
    plus Gaussian noise of std `noise`."""
    values = torch.rand(n, length, generator=gen)
    half = length // 2
    first = torch.randint(0, half, (n,), generator=gen)
    second = torch.randint(half, length, (n,), generator=gen)
    markers = torch.zeros(n, length)
    rows = torch.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    y = (values * markers).sum(dim=1, keepdim=True)
    y = y + noise * torch.randn(n, 1, generator=gen)
    return torch.stack([values, markers], dim=1), y


def mean_guess_mse(y_train: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The mse of a model that learned nothing (it predicts the training targets' mean) on
    targets `y`: about their variance, 1/6 for the adding problem. The key is the summary's."""
    return {"baseline_mse": float((y - y_train.mean(dim=0)).square().mean())}
