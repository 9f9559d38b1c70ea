"""The Fréchet distance between two sets of features, each taken as a Gaussian (Heusel et
al. 2017's FID, here on dltrain's own feature network):

    d² = ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁ Σ₂)^½)

with tr((Σ₁Σ₂)^½) = Σ √λ_i over the eigenvalues λ_i of Σ₁^½ Σ₂ Σ₁^½ (symmetric and positive
semi-definite, so its eigenvalues are real and its square root well defined), in float64.
Zero for identical statistics; it grows with the distance of the means and the mismatch of
the covariances. Like every FID it depends on the number of samples: compare values
computed with the same number.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Stats:
    """The mean (D,) and covariance (D, D) of N feature vectors, float64."""

    mean: torch.Tensor
    cov: torch.Tensor
    n: int


def feature_stats(features: torch.Tensor) -> Stats:
    """Mean and unbiased covariance of (N, D) features."""
    f = features.double()
    mean = f.mean(0)
    centred = f - mean
    cov = centred.T @ centred / max(len(f) - 1, 1)
    return Stats(mean, cov, len(f))


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    """The square root of a symmetric positive semi-definite matrix (eigenvalues below zero,
    from rounding, taken as zero)."""
    values, vectors = torch.linalg.eigh((m + m.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(a: Stats, b: Stats) -> float:
    """d² between the Gaussians of `a` and `b` (see the module's docstring)."""
    root = _sqrt_psd(a.cov)
    middle = root @ b.cov @ root
    cross = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    d2 = (a.mean - b.mean).square().sum() + a.cov.trace() + b.cov.trace() - 2 * cross
    return max(float(d2), 0.0)
