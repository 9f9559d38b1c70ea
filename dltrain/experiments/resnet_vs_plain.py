"""Residual against plain networks (conf/experiment/resnet_vs_plain.yaml): the degradation
problem, as final training loss against depth and the gradient that reaches each layer at
step 0 (the gradients probe)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from dltrain.experiments.figures import new_figure, to_png
from dltrain.experiments.readers import Run, curve, layer_profile, read_metrics
from dltrain.experiments.section import Section
from dltrain.log.console import fmt
from dltrain.probes import tags


def weight_layers(config: Mapping[str, Any]) -> int | None:
    """Linear layers from input to output of an MLP or a residual MLP (two a block, plus the
    stem and the head)."""
    model = config.get("model") or {}
    if model.get("name") == "mlp":
        hidden = model.get("hidden")
        return (len(hidden) if hidden is not None else int(model.get("depth", 0))) + 1
    if model.get("name") == "resnet":
        return 2 * int(model.get("depth", 0)) + 2
    return None


RESNET_POINT = (
    "The degradation problem (He et al. 2016): a deeper plain network should do at least as "
    "well as a shallower one (its extra layers could learn the identity), yet it trains worse "
    "— its training error, not only its test error, goes up, because the gradient fades on its "
    "way back through many layers. A residual block computes x + F(x): the identity is free, "
    "and the gradient reaches the first layers through the shortcuts. Both families below have "
    "the same width, activation and optimiser, and no normalisation; depth counts weight "
    "layers.")


def resnet_vs_plain(runs: Sequence[Run], keys: Sequence[str]) -> Section:
    rows, findings = [], []
    grads: dict[str, tuple[int, list[float]]] = {}
    for run in runs:
        records = read_metrics(run.path)
        family = "residual" if run.value("model.name") == "resnet" else "plain"
        layers = weight_layers(run.job.config)
        train = curve(records, "train/loss")
        norms = [v for _, v in layer_profile(records, tags.GRADIENTS, "norm")]
        if norms and (family not in grads or (layers or 0) > grads[family][0]):
            grads[family] = (layers or 0, norms)
        rows.append({"family": family, "weight_layers": layers,
                     "final_train_loss": train[-1][1] if train else None,
                     "test_accuracy": (run.summary.get("test") or {}).get("accuracy"),
                     "grad_norm_first_layer": norms[0] if norms else None,
                     "grad_norm_last_layer": norms[-1] if norms else None})
    rows.sort(key=lambda r: (r["family"], r["weight_layers"] or 0))
    for family in ("plain", "residual"):
        members = [r for r in rows if r["family"] == family and r["final_train_loss"] is not None]
        if members:
            findings.append(f"{family}: final training loss " + ", ".join(
                f"{fmt(r['final_train_loss'])} at {r['weight_layers']} layers"
                for r in members) + "; test accuracy " + ", ".join(
                fmt(r["test_accuracy"]) for r in members) + ".")
    for family, (layers, norms) in grads.items():
        findings.append(f"At step 0 the deepest {family} net ({layers} layers) has a gradient "
                        f"norm of {fmt(norms[0])} at its first layer and {fmt(norms[-1])} at "
                        "its last.")
    fig, axes = new_figure(1, 2)
    for i, family in enumerate(("plain", "residual")):
        members = [r for r in rows if r["family"] == family and r["final_train_loss"] is not None]
        if members:
            axes[0][0].plot([r["weight_layers"] for r in members],
                            [r["final_train_loss"] for r in members], marker="o",
                            color=f"C{i}", label=family)
        if family in grads:
            layers, norms = grads[family]
            axes[0][1].plot(range(1, len(norms) + 1), norms, marker=".", color=f"C{i}",
                            label=f"{family}, {layers} layers")
    axes[0][0].set_xlabel("weight layers")
    axes[0][0].set_ylabel("final training loss")
    axes[0][0].set_title("training loss against depth")
    axes[0][1].set_xlabel("parameter layer (input to output)")
    axes[0][1].set_ylabel("gradient norm at step 0")
    axes[0][1].set_title("gradient reaching each layer, deepest nets")
    for ax in axes[0]:
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return Section("resnet_vs_plain", RESNET_POINT, findings, rows, {"depth": to_png(fig)})
