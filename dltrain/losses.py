"""Losses and per-task metrics.

`build_loss(cfg.loss, spec)` returns a module `loss(out, y) -> scalar`. `loss=auto` follows the
task: cross-entropy for classification (the negative log-likelihood of a categorical model),
MSE for regression (of a Gaussian one), token cross-entropy for language models.

`task=reconstruction` compares a model's output with its input: MSE for an autoencoder; for a
variational one (whose output is a `Variational` pair) the negative ELBO, with weight
`loss.beta` on its KL term.

Metrics follow the task too — accuracy; mse and mae; perplexity; mse and mae, and for a VAE
recon, kl and elbo — and are accumulated as sums on the device by `MetricTotals`, so
evaluating a split costs one host sync, not one per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.autoencoder import Variational
from dltrain.targets import call_target

# The metrics every model of a task has (a VAE adds recon, kl and elbo to reconstruction's).
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "regression": ("mse", "mae"),
    "language_model": ("perplexity",),
    "reconstruction": ("mse", "mae"),
}
MAXIMISED = frozenset({"accuracy"})  # every other metric, and every loss, is minimised


class TokenLoss(nn.Module):
    """Applies a per-position loss to (B, T, V) logits and (B, T) targets, flattened."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner(out.flatten(0, -2), y.flatten())


class BinaryLoss(nn.Module):
    """Applies a one-logit loss (BCE with logits) to (B, 1) outputs and (B,) class labels."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.inner(out.squeeze(-1), y.to(out.dtype))


class ReconstructionLoss(nn.Module):
    """A reconstruction's criterion: `inner(x̂, x)` for an autoencoder.

    For a VAE, the negative ELBO with weight `beta` on the KL term, per sample: the inner loss
    summed over a sample's values (for MSE, the squared error ‖x̂ − x‖², which is −log p(x|z)
    of a Gaussian decoder of variance ½ up to a constant) plus beta · KL(q(z|x) ‖ N(0, I)),
    both averaged over the batch.
    """

    def __init__(self, inner: nn.Module, beta: float) -> None:
        super().__init__()
        self.inner = inner
        self.beta = beta

    def forward(self, out: torch.Tensor | Variational, y: torch.Tensor) -> torch.Tensor:
        if isinstance(out, Variational):
            values = y[0].numel()  # the inner loss is a mean over B * values elements
            return self.inner(out.x, y) * values + self.beta * out.kl.mean()
        return self.inner(out, y)


_CLASS_LOSSES = ("auto", "cross_entropy", "bce")
_VALUE_LOSSES = ("auto", "mse", "mae", "huber")


def loss_spec(cfg: Mapping[str, Any], spec: DataSpec) -> DataSpec:
    """The spec the model is built from: a binary loss asks for one logit instead of two.

    Also refuses a loss that does not fit the task, before anything is trained.
    """
    name = str(cfg["name"])
    fits = _CLASS_LOSSES if spec.task in ("classification", "language_model") else _VALUE_LOSSES
    if name in _CLASS_LOSSES + _VALUE_LOSSES and name not in fits:
        raise ConfigError(f"loss={name} does not fit a {spec.task} task (data={spec.name}); "
                          f"use one of: {', '.join(fits)}.")
    if name == "bce":
        if spec.task != "classification" or spec.num_classes != 2:
            raise ConfigError(f"loss=bce needs two classes, but data={spec.name} has "
                              f"{spec.num_classes or 'no'} classes; use loss=cross_entropy.")
        return replace(spec, num_outputs=1)
    return spec


def build_loss(cfg: Mapping[str, Any], spec: DataSpec) -> nn.Module:
    """The training criterion for `spec.task` from the `loss` config node."""
    name = str(cfg["name"])
    if name == "auto":
        if spec.task in ("classification", "language_model"):
            loss: nn.Module = nn.CrossEntropyLoss(label_smoothing=float(cfg["label_smoothing"]))
        else:
            loss = nn.MSELoss()
    else:
        loss = call_target(cfg, "loss")
    if name == "bce":
        return BinaryLoss(loss)
    if spec.task == "reconstruction":
        # Only loss=auto has `beta` (conf/loss/auto.yaml); a named loss trains a VAE on the
        # negative ELBO itself, whose KL term has weight 1.
        beta = float(cfg["beta"]) if name == "auto" else 1.0
        return ReconstructionLoss(loss, beta)
    return TokenLoss(loss) if spec.task == "language_model" else loss


def monitor_metric(task: str, monitor: str = "auto") -> tuple[str, str]:
    """(metric, mode) that picks the best checkpoint: `auto` is val accuracy or val loss."""
    if monitor == "auto":
        monitor = "val/accuracy" if task == "classification" else "val/loss"
    return monitor, ("max" if monitor.split("/")[-1] in MAXIMISED else "min")


class MetricTotals:
    """Running sums of the loss and the task's metrics, kept on the device.

    With `members`, the outputs carry a leading axis of that many models trained as one
    stack (a vectorised sweep): (members, B, ...) outputs, targets and (members,) losses,
    summed per member; `compute_each` gives each member's metrics.
    """

    def __init__(self, task: str, members: int | None = None) -> None:
        self.task = task
        self.members = members
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0  # samples (tokens for language models, elements for regression)
        self.values = 1  # values per sample that `count` counts (a reconstruction's: all)

    def _total(self, t: torch.Tensor) -> torch.Tensor:
        return t.sum() if self.members is None else t.flatten(1).sum(1)

    def update(self, out: torch.Tensor | Variational, y: torch.Tensor, loss: torch.Tensor
               ) -> None:
        one = y if self.members is None else y[0]  # one model's targets
        n = one.numel()
        stats = {"loss": loss.detach().float() * n}
        if isinstance(out, Variational):
            stats["kl"] = self._total(out.kl.detach().float())
            out = out.x
        if self.task == "reconstruction":
            self.values = one[0].numel()
        out = out.detach().float()
        if self.task in ("classification", "language_model"):
            if self.task == "classification":
                # one logit (a binary loss) predicts class 1 when positive
                pred = (out.squeeze(-1) > 0).long() if out.shape[-1] == 1 else out.argmax(-1)
                stats["correct"] = self._total(pred == y)
        else:
            err = out - y
            stats["sq"] = self._total(err.square())
            stats["abs"] = self._total(err.abs())
        for key, value in stats.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += n

    def _totals(self) -> tuple[list[str], torch.Tensor]:
        keys = list(self.sums)
        count = torch.full_like(self.sums["loss"], float(self.count))
        return keys, torch.stack([self.sums[k].float() for k in keys] + [count])

    def compute(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> dict[str, float]:
        """Mean loss and metrics (one host sync for all of them).

        `reduce` sums the totals over the processes of a data-parallel job, each of which
        saw its own shard of the split.
        """
        if not self.sums:
            return {}
        keys, totals = self._totals()
        if reduce is not None:
            totals = reduce(totals)
        *sums, count = totals.tolist()
        return self._metrics(dict(zip(keys, sums, strict=True)), count)

    def compute_each(self) -> list[dict[str, float]]:
        """Each member's mean loss and metrics (one host sync for the whole stack)."""
        keys, totals = self._totals()
        return [self._metrics(dict(zip(keys, column[:-1], strict=True)), column[-1])
                for column in totals.T.tolist()]

    def _metrics(self, values: dict[str, float], count: float) -> dict[str, float]:
        result = {"loss": values["loss"] / count}
        if self.task == "classification":
            result["accuracy"] = values["correct"] / count
        elif self.task == "language_model":
            result["perplexity"] = math.exp(min(result["loss"], 50.0))
        else:
            result["mse"] = values["sq"] / count
            result["mae"] = values["abs"] / count
        if "kl" in values:  # a VAE: per sample, the ELBO of a Gaussian decoder of variance ½
            samples = count / self.values  # (up to its constant: values/2 · log π)
            result["recon"] = values["sq"] / samples
            result["kl"] = values["kl"] / samples
            result["elbo"] = -(result["recon"] + result["kl"])
        return result
