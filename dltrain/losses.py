"""Losses and per-task metrics.

`build_loss(cfg.loss, spec)` returns a module `loss(out, y) -> scalar`. `loss=auto` follows the
task: cross-entropy for classification (the negative log-likelihood of a categorical model),
MSE for regression (of a Gaussian one), token cross-entropy for language models.

`task=reconstruction` compares a model's output with its input: MSE for an autoencoder; for a
variational one (whose output is a `Variational` pair) the negative ELBO, with weight
`loss.beta` on its KL term.

Metrics follow the task too — accuracy; mse, mae, rmse, r2, rel_l2 and max_error (in the
data's own units); perplexity; mse and mae, and for a VAE recon, kl and elbo — and are
accumulated as sums on the device by `MetricTotals`, so evaluating a split costs one host
sync, not one per batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from dltrain.config import own_code
from dltrain.data.spec import DataSpec, TargetScale
from dltrain.errors import ConfigError
from dltrain.models.autoencoder import Variational
from dltrain.targets import call_target

# The metrics every model of a task has (a VAE adds recon, kl and elbo to reconstruction's).
METRICS: dict[str, tuple[str, ...]] = {
    "classification": ("accuracy",),
    "regression": ("mse", "mae", "rmse", "r2", "rel_l2", "max_error"),
    "language_model": ("perplexity",),
    "reconstruction": ("mse", "mae"),
    # task=pinn: the network's field against the reference solution on the evaluation grid
    "pinn": ("mse", "mae", "rmse", "r2", "rel_l2", "max_error"),
    # task=generation: the Fréchet distance of generated samples' features (generation/score)
    "generation": ("fid",),
}
VALUE_TASKS = ("regression", "pinn")  # metrics of values in the data's units
MAXIMISED = frozenset({"accuracy", "r2"})  # every other metric, and every loss, is minimised


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


def relative_l2(err: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """||err|| / ||truth|| of each sample (rows of (..., values) tensors); 0 for an exact
    prediction of a zero target, inf for a wrong one."""
    err_norm, truth_norm = err.norm(dim=-1), truth.norm(dim=-1)
    zero = torch.where(err_norm == 0, 0.0, math.inf).to(err_norm.dtype)
    return torch.where(truth_norm > 0, err_norm / truth_norm.clamp_min(1e-30), zero)


class RelativeL2Loss(nn.Module):
    """loss=rel_l2: ||pred − y|| / ||y|| of each sample, averaged over the batch (what operator
    papers train with: every sample counts alike, however large its solution)."""

    def forward(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        err = (out - y).flatten(1)
        # the norms in float32 at least (bf16 sums of squares lose the small errors)
        err, y = err.float(), y.flatten(1).float()
        return (err.norm(dim=1) / y.norm(dim=1).clamp_min(1e-12)).mean()


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
_VALUE_LOSSES = ("auto", "mse", "mae", "huber", "rel_l2")


def loss_spec(cfg: Mapping[str, Any], spec: DataSpec) -> DataSpec:
    """The spec the model is built from: a binary loss asks for one logit instead of two.

    Also refuses a loss that does not fit the task, before anything is trained. The user's
    own loss (`loss._target_=mymodule.MyLoss`) is taken as fitting: it knows its task.
    """
    if own_code(cfg):
        return spec
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
    """The training criterion for `spec.task` from the `loss` config node.

    The user's own loss (`loss._target_=mymodule.MyLoss`, called with the node's keys) is
    given the model's output and the targets as they are, and the inputs too where its
    forward asks for them (`takes_inputs`): `forward(out, y, x)`.
    """
    if own_code(cfg):
        return call_target(cfg, "loss")
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


def takes_inputs(loss: nn.Module) -> bool:
    """Whether a loss asks for the batch's inputs as a third argument, `forward(out, y, x)`
    (a physics-informed term, say): read once from its signature, not at every step."""
    import inspect

    try:
        params = inspect.signature(loss.forward).parameters.values()
    except (TypeError, ValueError):
        return False
    # a third positional parameter without a default: forward(out, y, reduction="mean") keeps
    # its default, forward(out, y, x) is given the inputs
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return (len(positional) >= 3 and positional[2].default is inspect.Parameter.empty) or any(
        p.kind == p.VAR_POSITIONAL for p in params)


def with_inputs(loss: nn.Module) -> Callable[[Any, torch.Tensor, torch.Tensor], torch.Tensor]:
    """`loss` as a function of (out, y, x), the inputs handed over only where it takes them
    (`takes_inputs`, decided here once)."""
    if takes_inputs(loss):
        return loss
    return lambda out, y, x: loss(out, y)


def monitor_metric(task: str, monitor: str = "auto") -> tuple[str, str]:
    """(metric, mode) that picks the best checkpoint: `auto` is val accuracy or val loss."""
    if monitor == "auto":
        # a PINN's validation loss is the mse against the reference: its relative L2 error
        # is the number papers report, and the one the best step is chosen by
        monitor = {"classification": "val/accuracy", "pinn": "val/rel_l2",
                   "generation": "val/fid"}.get(task, "val/loss")
    return monitor, ("max" if monitor.split("/")[-1] in MAXIMISED else "min")


class MetricTotals:
    """Running sums of the loss and the task's metrics, kept on the device.

    With `members`, the outputs carry a leading axis of that many models trained as one
    stack (a vectorised sweep): (members, B, ...) outputs, targets and (members,) losses,
    summed per member; `compute_each` gives each member's metrics.

    Regression metrics are in the data's own units: `scale` says how the targets were
    standardised for training (its mean and std broadcast against the targets given to
    `update`; a stack whose members train on different data sets gives each member's,
    stacked along a leading axis), None when they were not. The loss stays the training
    criterion's, in the units the model was trained in.

    r2 is 1 − SS_res / SS_tot with SS_tot around the split's own mean of each output (every
    value of a target sample is an output: a column of a table, a pixel of a field), pooled
    over the outputs (scikit-learn's multioutput='variance_weighted'). Its sums are kept in
    float64 (float32 on MPS, which has no float64) and shifted by the training mean (the
    standardised targets times std), the same shift on every process, so that they neither
    cancel on targets far from zero nor differ between the ranks that sum them.
    """

    def __init__(self, task: str, members: int | None = None,
                 scale: TargetScale | None = None) -> None:
        self.task = task
        self.members = members
        self.scale = scale
        self.sums: dict[str, torch.Tensor] = {}  # combined over batches and ranks by a sum
        self.peaks: dict[str, torch.Tensor] = {}  # combined by a max (max_error)
        self.count = 0  # samples (tokens for language models, elements for regression)
        self.values = 1  # values per sample that `count` counts (a reconstruction's: all)
        # the scale's (std, mean) on the outputs' device and in `_wide`, made at the first batch:
        # a copy from the host at every batch would wait for the device twice a batch
        self._scale_on: tuple[torch.Tensor, torch.Tensor] | None = None

    def _total(self, t: torch.Tensor) -> torch.Tensor:
        return t.sum() if self.members is None else t.flatten(1).sum(1)

    def _per_output(self, t: torch.Tensor) -> torch.Tensor:
        """Sums over the batch axis, one per output: (outputs,) or (members, outputs)."""
        if self.members is None:
            return t.sum(0).reshape(-1)
        return t.sum(1).reshape(self.members, -1)

    def _peak(self, t: torch.Tensor) -> torch.Tensor:
        return t.max() if self.members is None else t.flatten(1).amax(1)

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
        elif self.task in VALUE_TASKS:
            stats.update(self._regression(out, y))
        else:
            err = out - y
            stats["sq"] = self._total(err.square())
            stats["abs"] = self._total(err.abs())
        for key, value in stats.items():
            self.sums[key] = self.sums[key] + value if key in self.sums else value
        self.count += n

    def _regression(self, out: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """A batch's sums in the data's units; its largest error into `peaks`."""
        wide = _wide(out.device)
        shifted = y.to(wide)  # the targets less the train mean, once scaled below
        err = out.to(wide) - shifted
        truth = shifted
        if self.scale is not None:
            if self._scale_on is None:
                self._scale_on = (self.scale.std.to(out.device, wide),
                                  self.scale.mean.to(out.device, wide))
            std, mean = self._scale_on
            # (ŷ − y)·std rather than restore(ŷ) − restore(y): no mean added to cancel again
            err, shifted = err * std, shifted * std
            truth = shifted + mean
        size = err.abs()
        peak = self._peak(size)
        self.peaks["max"] = torch.maximum(self.peaks["max"], peak) if "max" in self.peaks \
            else peak
        sums = {"sq": self._total(err.square()), "abs": self._total(size),
                "y_sq": self._total(truth.square()),
                "shift_sum": self._per_output(shifted),
                "shift_sq": self._per_output(shifted.square())}
        lead = 1 if self.members is None else 2  # the axes before a sample's values
        if y.ndim - lead >= 2:  # a field a sample: rel_l2 per sample, averaged (operator data)
            sums["rel_sum"] = self._total(relative_l2(err.flatten(lead), truth.flatten(lead)))
        return sums

    def _flat(self, named: dict[str, torch.Tensor]) -> tuple[list[tuple[str, int]], torch.Tensor]:
        """The tensors of `named` side by side in one float64 (K,) or (members, K) tensor, and
        (name, width) of each, to unpack them from it."""
        lead = () if self.members is None else (self.members,)
        wide = _wide(self.sums["loss"].device)
        parts = [t.reshape(*lead, -1).to(wide) for t in named.values()]
        layout = [(k, p.shape[-1]) for k, p in zip(named, parts, strict=True)]
        empty = self.sums["loss"].new_zeros(*lead, 0, dtype=wide)
        return layout, torch.cat(parts, -1) if parts else empty

    def _totals(self) -> tuple[list[tuple[str, int]], torch.Tensor,
                               list[tuple[str, int]], torch.Tensor]:
        count = torch.full_like(self.sums["loss"], float(self.count))
        return (*self._flat({**self.sums, "count": count}), *self._flat(self.peaks))

    def compute(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
                reduce_max: Callable[[torch.Tensor], torch.Tensor] | None = None
                ) -> dict[str, float]:
        """Mean loss and metrics (one host sync for all of them).

        `reduce` sums the totals over the processes of a data-parallel job, each of which
        saw its own shard of the split; `reduce_max` takes the largest of theirs (for
        max_error, which a sum would not give).
        """
        if not self.sums:
            return {}
        layout, totals, peak_layout, peaks = self._totals()
        if reduce is not None:
            totals = reduce(totals)
            if peak_layout:
                if reduce_max is None:
                    raise ValueError("MetricTotals.compute: reduce without reduce_max would "
                                     "sum max_error over the processes")
                peaks = reduce_max(peaks)
        row = torch.cat([totals, peaks]).tolist()
        return self._metrics(_unpack(layout + peak_layout, row))

    def compute_each(self) -> list[dict[str, float]]:
        """Each member's mean loss and metrics (one host sync for the whole stack)."""
        layout, totals, peak_layout, peaks = self._totals()
        return [self._metrics(_unpack(layout + peak_layout, row))
                for row in torch.cat([totals, peaks], -1).tolist()]

    def _metrics(self, values: dict[str, Any]) -> dict[str, float]:
        count = values["count"]
        result = {"loss": values["loss"] / count}
        if self.task == "classification":
            result["accuracy"] = values["correct"] / count
        elif self.task == "language_model":
            result["perplexity"] = math.exp(min(result["loss"], 50.0))
        elif self.task in VALUE_TASKS:
            result.update(_regression_metrics(values, count))
        else:
            result["mse"] = values["sq"] / count
            result["mae"] = values["abs"] / count
        if "kl" in values:  # a VAE: per sample, the ELBO of a Gaussian decoder of variance ½
            samples = count / self.values  # (up to its constant: values/2 · log π)
            result["recon"] = values["sq"] / samples
            result["kl"] = values["kl"] / samples
            result["elbo"] = -(result["recon"] + result["kl"])
        return result


def _wide(device: torch.device) -> torch.dtype:
    """The dtype metric sums are kept in: float64, but float32 on MPS (which has no float64)."""
    return torch.float32 if device.type == "mps" else torch.float64


_PER_OUTPUT = ("shift_sum", "shift_sq")  # the sums kept per output, lists however many


def _unpack(layout: list[tuple[str, int]], row: list[float]) -> dict[str, Any]:
    """name -> its number (width 1) or its list of numbers, from a row `_flat` laid out."""
    values: dict[str, Any] = {}
    at = 0
    for key, width in layout:
        values[key] = row[at:at + width] if key in _PER_OUTPUT else row[at]
        at += width
    return values


def _regression_metrics(values: dict[str, Any], count: float) -> dict[str, float]:
    """mse, mae, rmse, r2, rel_l2 and max_error from a split's sums (in the data's units)."""
    sq = values["sq"]
    mse = sq / count
    samples = count / len(values["shift_sum"])  # count holds every value of every sample
    # SS_tot of each output around the split's own mean, from sums shifted by the train mean
    ss_tot = sum(max(s2 - s * s / samples, 0.0)
                 for s, s2 in zip(values["shift_sum"], values["shift_sq"], strict=True))
    if ss_tot > 0:
        r2 = 1.0 - sq / ss_tot
    else:  # constant targets: as scikit-learn says (force_finite), perfect or nothing
        r2 = 1.0 if sq == 0 else 0.0
    y_sq = values["y_sq"]
    rel_l2 = math.sqrt(sq / y_sq) if y_sq > 0 else (0.0 if sq == 0 else math.inf)
    if "rel_sum" in values:  # fields: each sample's relative error, averaged over samples
        rel_l2 = values["rel_sum"] / samples
    return {"mse": mse, "mae": values["abs"] / count, "rmse": math.sqrt(mse), "r2": r2,
            "rel_l2": rel_l2, "max_error": values["max"]}
