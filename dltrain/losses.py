"""Losses and per-task metrics.

`build_loss(cfg.loss, spec)` returns a module `loss(out, y) -> scalar`. `loss=auto` follows the
task: cross-entropy for classification (the negative log-likelihood of a categorical model),
MSE for regression (of a Gaussian one), token cross-entropy for language models.

Metrics follow the task too — accuracy; mse and mae; perplexity — and are accumulated as sums
on the device by `MetricTotals`, so evaluating a split costs one host sync, not one per batch.
"""

from __future__ import annotations

import math

import torch
from omegaconf import DictConfig
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.targets import call_target

METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "regression": ("mse", "mae"),
    "language_model": ("perplexity",),
    "reconstruction": ("mse",),
}
MAXIMISED = frozenset({"accuracy"})  # every other metric, and every loss, is minimised


class TokenLoss(nn.Module):
    """Applies a per-position loss to (B, T, V) logits and (B, T) targets, flattened."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner(out.flatten(0, -2), y.flatten())


def build_loss(cfg: DictConfig, spec: DataSpec) -> nn.Module:
    """The training criterion for `spec.task` from the `loss` config node."""
    if cfg.name == "auto":
        loss: nn.Module = (nn.CrossEntropyLoss() if spec.task in ("classification",
                                                                    "language_model")
                           else nn.MSELoss())
    else:
        loss = call_target(cfg, "loss")
    return TokenLoss(loss) if spec.task == "language_model" else loss


def monitor_metric(task: str, monitor: str = "auto") -> tuple[str, str]:
    """(metric, mode) that picks the best checkpoint: `auto` is val accuracy or val loss."""
    if monitor == "auto":
        monitor = "val/accuracy" if task == "classification" else "val/loss"
    return monitor, ("max" if monitor.split("/")[-1] in MAXIMISED else "min")


class MetricTotals:
    """Running sums of the loss and the task's metrics, kept on the device."""

    def __init__(self, task: str) -> None:
        self.task = task
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0  # samples (tokens for language models, elements for regression)

    def update(self, out: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> None:
        out = out.detach().float()
        n = y.numel()
        stats = {"loss": loss.detach().float() * n}
        if self.task in ("classification", "language_model"):
            if self.task == "classification":
                stats["correct"] = (out.argmax(-1) == y).sum()
        else:
            err = out - y
            stats["sq"] = err.square().sum()
            stats["abs"] = err.abs().sum()
        for key, value in stats.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += n

    def compute(self) -> dict[str, float]:
        """Mean loss and metrics (one host sync for all of them)."""
        if not self.sums:
            return {}
        keys = list(self.sums)
        values = dict(zip(keys, torch.stack([self.sums[k] for k in keys]).tolist(),
                          strict=True))
        result = {"loss": values["loss"] / self.count}
        if self.task == "classification":
            result["accuracy"] = values["correct"] / self.count
        elif self.task == "language_model":
            result["perplexity"] = math.exp(min(result["loss"], 50.0))
        else:
            result["mse"] = values["sq"] / self.count
            result["mae"] = values["abs"] / self.count
        return result
