"""Weight initialisation (conf/experiment/init_study.yaml): how the spread of the activations
and the size of the gradient change from layer to layer at step 0, by initialisation scheme and
activation function, read from the activations and gradients probes."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from dltrain.experiments.figures import legend_below, line_styles, new_figure, offsets, to_png
from dltrain.experiments.readers import Run, layer_profile, read_metrics
from dltrain.experiments.section import Section, run_label
from dltrain.log.console import fmt
from dltrain.probes import tags


def per_layer_ratio(values: Sequence[float]) -> float | None:
    """The geometric mean factor from one layer to the next."""
    if len(values) < 2 or values[0] <= 0 or values[-1] <= 0:
        return None
    return (values[-1] / values[0]) ** (1.0 / (len(values) - 1))


INIT_POINT = (
    "A linear layer multiplies the spread of its input by about sqrt(N_in) * std(w). With "
    "Var(w) = 1/N_in (LeCun; Xavier is the same for square layers) the std of the "
    "activations stays the same from layer to layer (tanh, which squashes large values, lets "
    "it drift down slowly), so a deep network passes the signal forward and the gradient "
    "backward; a fixed std of 0.05 with 100 inputs gives a factor 0.5 a layer, and after 10 "
    "layers almost nothing is left of either. The figure shows the std of every layer's "
    "activations and the norm of every layer's gradient at step 0 (the network's first, "
    "input-sized layer sets the starting level); the findings say whether the network then "
    "learned with plain momentum SGD. A network of identity layers stays a linear model "
    "whatever its depth: it cannot separate the spirals, however well it is initialised.")


def init_study(runs: Sequence[Run], keys: Sequence[str]) -> Section:
    rows, findings = [], []
    profiles: dict[str, tuple[list[tuple[str, float]], list[tuple[str, float]]]] = {}
    for run in runs:
        records = read_metrics(run.path)
        stds = layer_profile(records, tags.ACTIVATIONS, "std")
        grads = layer_profile(records, tags.GRADIENTS, "norm")
        label = run_label(run, keys)
        profiles[label] = (stds, grads)
        ratio = per_layer_ratio([v for _, v in stds])
        test = run.summary.get("test") or {}
        rows.append({"configuration": label, "layers": len(stds),
                     "std_first": stds[0][1] if stds else None,
                     "std_last": stds[-1][1] if stds else None, "std_ratio_per_layer": ratio,
                     "grad_norm_first": grads[0][1] if grads else None,
                     "grad_norm_last": grads[-1][1] if grads else None,
                     "test_accuracy": test.get("accuracy"), "test_loss": test.get("loss")})
        if stds:
            findings.append(
                f"{label}: activation std {fmt(stds[0][1])} at the first layer, "
                f"{fmt(stds[-1][1])} at layer {len(stds)} (x{fmt(ratio or math.nan)} a layer)"
                + (f"; gradient norm {fmt(grads[0][1])} at the first layer, "
                   f"{fmt(grads[-1][1])} at the last" if grads else "")
                + (f"; test accuracy {fmt(test['accuracy'])}" if "accuracy" in test else "")
                + ".")
    fig = depth_figure(profiles, line_styles(runs, keys))
    return Section("init_study", INIT_POINT, findings, rows, {"by_depth": to_png(fig)})


Profile = list[tuple[str, float]]


def depth_figure(profiles: dict[str, tuple[Profile, Profile]],
                 styles: dict[str, dict[str, Any]]) -> Any:
    """Activation std and gradient norm by layer, one curve per configuration, its legend
    under the panels. Curves of different colours are shifted a little apart along the layer
    axis (`offsets`): configurations that give equal values (Xavier and LeCun on square
    layers) stay visible."""
    fig, axes = new_figure(1, 2, size=(6.4, 4.4 + 0.25 * math.ceil(len(profiles) / 4)),
                           layout="constrained")
    styles = {label: styles.get(label, {}) for label in profiles}
    shift = offsets(styles)
    for label, (stds, grads) in profiles.items():
        for ax, profile in zip(axes[0], (stds, grads), strict=True):
            if profile:
                ax.plot([i + 1 + shift[label] for i in range(len(profile))],
                        [v for _, v in profile], markersize=5, label=label,
                        **styles[label])
    for ax, what in zip(axes[0], ("activation std", "gradient norm"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel(f"{what} at step 0")
        ax.set_title(f"{what} by depth at initialisation")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    legend_below(fig, styles)
    return fig
