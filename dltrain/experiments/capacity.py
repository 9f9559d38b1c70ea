"""The capacity studies (conf/experiment/overfitting.yaml, double_descent.yaml,
bias_variance.yaml): training and test error against the size of the model, and the error split
into bias², variance and noise, all from the fit probe's fit.npz of every run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from dltrain.experiments.figures import log_scale_ok, new_figure, to_png
from dltrain.experiments.readers import Run, read_fit
from dltrain.experiments.section import Section, capacity_key, finite_mean, group_runs, run_label
from dltrain.log.console import fmt


def decompose(predictions: np.ndarray, truth: np.ndarray, noise_std: float) -> dict[str, float]:
    """Bias², variance and noise of the expected squared error at the points of a grid.

    `predictions` (S training sets, points) are the fits of one capacity to different training
    sets, `truth` (points) the true function. Averaged over the grid:
      variance = sum over training sets of (fit - mean fit)² / (S - 1)
      bias²    = (mean fit - truth)² - variance / S
      noise    = noise_std²
    The mean fit of S training sets still carries variance / S of scatter; taking it out of
    bias² makes both estimates unbiased, and bias² + variance still equals the mean of
    (fit - truth)² over the training sets exactly: bias² + variance + noise is the expected
    error on a new noisy point.
    """
    n = predictions.shape[0]
    mean_fit = predictions.mean(axis=0)
    distance = float(np.mean((predictions - truth) ** 2))
    variance = float(np.mean((predictions - mean_fit) ** 2)) * n / (n - 1) if n > 1 else 0.0
    bias2 = distance - variance
    noise = float(noise_std) ** 2
    return {"bias2": bias2, "variance": variance, "noise": noise,
            "expected": bias2 + variance + noise}


def _fit_rows(runs: Sequence[Run], keys: Sequence[str], capacity: str | None
              ) -> list[dict[str, Any]]:
    """Per configuration (seeds averaged): capacity, parameters, train and test error of the
    final weights (fit.npz)."""
    rows = []
    other = [k for k in keys if k != capacity]
    for label, members in group_runs(runs, keys).items():
        fits = [f for f in (read_fit(r.path) for r in members) if f is not None]
        if not fits:
            continue
        rows.append({"configuration": label,
                     "series": run_label(members[0], other),
                     "capacity": members[0].value(capacity) if capacity else None,
                     "params": members[0].summary.get("params"),
                     "train_points": len(fits[0]["train_x"]),
                     "train_mse": finite_mean([float(f["train_mse"]) for f in fits]),
                     "test_mse": finite_mean([float(f["test_mse"]) for f in fits]),
                     "noise_var": float(fits[0]["noise"]) ** 2, "n": len(fits)})
    return sorted(rows, key=lambda r: (r["series"], r["params"] or 0))


def _error_figure(rows: Sequence[dict[str, Any]], title: str,
                  threshold: float | None = None) -> bytes:
    fig, axes = new_figure()
    ax = axes[0][0]
    series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault(row["series"], []).append(row)
    for i, (name, members) in enumerate(series.items()):
        params = [r["params"] for r in members]
        tag = f" ({name})" if name != "all runs" else ""
        ax.plot(params, [r["test_mse"] for r in members], marker="o", color=f"C{i}",
                label=f"test{tag}")
        ax.plot(params, [r["train_mse"] for r in members], marker=".", linestyle="--",
                color=f"C{i}", label=f"train{tag}")
    if rows:
        ax.axhline(rows[0]["noise_var"], color="0.5", linestyle=":", label="noise variance")
    if threshold is not None:
        ax.axvline(threshold, color="k", linestyle="-.", alpha=0.6,
                   label="parameters = training points")
    ax.set_xscale("log")
    errors = [r[k] for r in rows for k in ("train_mse", "test_mse")]
    if log_scale_ok(errors):
        ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("mean squared error (final weights)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return to_png(fig)


OVERFITTING_POINT = (
    "Capacity trades bias for variance. A model too small for the function underfits: "
    "training and test error are both high. As capacity grows the training error keeps "
    "falling, while the test error falls, bottoms out and rises again once the model "
    "fits the noise of its few training points: the U-curve. A regulariser (here an L2 "
    "penalty on the weights) takes capacity back and flattens the rise. Errors are those of "
    "the final weights, train on the training points, test on a fresh test set; the dotted "
    "line is the noise variance, the error of the true function itself.")


def overfitting(runs: Sequence[Run], keys: Sequence[str]) -> Section:
    rows = _fit_rows(runs, keys, capacity_key(keys))
    findings = []
    series: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        series.setdefault(row["series"], []).append(row)
    for name, members in series.items():
        best = min(members, key=lambda r: r["test_mse"])
        last = members[-1]
        text = (f"{name}: training error {fmt(members[0]['train_mse'])} at "
                f"{members[0]['params']} parameters, {fmt(last['train_mse'])} at "
                f"{last['params']}; test error lowest at {best['params']} parameters "
                f"({fmt(best['test_mse'])})")
        if last is not best:
            rise = last["test_mse"] / best["test_mse"]
            text += (f", {fmt(last['test_mse'])} at the largest model: "
                     + (f"x{fmt(rise)}, overfitting" if rise > 1.1 else "flat"))
        findings.append(text + ".")
    figure = _error_figure(rows, "training and test error against capacity")
    return Section("overfitting", OVERFITTING_POINT, findings, rows, {"u_curve": figure})


DOUBLE_DESCENT_POINT = (
    "Past the classical U-curve: when the number of parameters approaches the number of "
    "training points, the model can just interpolate them, noise included, and has hardly "
    "any freedom left in how: the test error peaks around this interpolation threshold. With "
    "many more parameters there are many fits of the training points as good as any other, "
    "the optimiser ends in a smooth one, and the test error falls again (Belkin et al. 2019, "
    "Nakkiran et al. 2019). The dash-dot line marks parameters = training points; for a "
    "network the threshold is not sharp.")


def double_descent(runs: Sequence[Run], keys: Sequence[str]) -> Section:
    rows = _fit_rows(runs, keys, capacity_key(keys))
    findings = []
    if rows:
        threshold = rows[0]["train_points"]
        peak = max(rows, key=lambda r: r["test_mse"])
        before = [r for r in rows if r["params"] < peak["params"]]
        after = [r for r in rows if r["params"] > peak["params"]]
        findings.append(f"{threshold} training points; the test error peaks at "
                        f"{peak['params']} parameters ({fmt(peak['test_mse'])}, training "
                        f"error {fmt(peak['train_mse'])}).")
        if before and after:
            low_before = min(before, key=lambda r: r["test_mse"])
            low_after = min(after, key=lambda r: r["test_mse"])
            findings.append(
                f"Below the peak the best test error is {fmt(low_before['test_mse'])} at "
                f"{low_before['params']} parameters; above it, "
                f"{fmt(low_after['test_mse'])} at {low_after['params']} parameters"
                + (" — a second descent, below the best of the smaller models."
                   if low_after["test_mse"] < low_before["test_mse"]
                   else " — a second descent." if low_after["test_mse"] < peak["test_mse"]
                   else "."))
        else:
            findings.append("The peak is at an end of the sweep: no double descent is "
                            "visible in these runs (train longer, or sweep wider).")
        interpolating = [str(r["params"]) for r in rows
                         if r["train_mse"] < 0.1 * r["noise_var"]]
        findings.append("Interpolating the training points (training error below a tenth of "
                        "the noise variance): "
                        + (", ".join(interpolating) + " parameters." if interpolating
                           else "none of these models."))
    figure = _error_figure(rows, "test error against parameters",
                           threshold=rows[0]["train_points"] if rows else None)
    return Section("double_descent", DOUBLE_DESCENT_POINT, findings, rows, {"curve": figure})


BIAS_VARIANCE_POINT = (
    "The expected squared error of a learner on a new point, averaged over the training sets "
    "it could have been given, splits into three parts: bias² (how far the average fit is from "
    "the truth), variance (how much the fits of different training sets scatter around their "
    "average) and the noise of the data, which no model removes. Small models have high bias "
    "and low variance, large ones the reverse. Here every capacity is fitted to several "
    "training sets (seeds) and the terms are computed from the fits on a fixed grid over the "
    "input range (bias² without the scatter that the mean of a few fits still has); their sum "
    "is checked against the test error measured on noisy test points.")


def bias_variance(runs: Sequence[Run], keys: Sequence[str]) -> Section:
    capacity = capacity_key(keys)
    rows, findings, panels = [], [], []
    for label, members in group_runs(runs, keys).items():
        fits = [f for f in (read_fit(r.path) for r in members) if f is not None and "truth" in f]
        if not fits:
            continue
        predictions = np.stack([f["pred"] for f in fits])
        terms = decompose(predictions, fits[0]["truth"], float(fits[0]["noise"]))
        measured = finite_mean([float(f["test_mse"]) for f in fits])
        rows.append({"configuration": label,
                     "capacity": members[0].value(capacity) if capacity else None,
                     "params": members[0].summary.get("params"), "training_sets": len(fits),
                     **terms, "measured_test_mse": measured})
        panels.append((label, fits[0]["x"], fits[0]["truth"], predictions))
    rows.sort(key=lambda r: r["params"] or 0)
    for row in rows:
        gap = row["measured_test_mse"] / row["expected"] - 1 if row["expected"] else math.nan
        findings.append(
            f"{row['configuration']} ({row['params']} parameters, {row['training_sets']} "
            f"training sets): bias² {_estimate(row['bias2'])}, variance "
            f"{fmt(row['variance'])}, noise {fmt(row['noise'])}; sum {fmt(row['expected'])} "
            f"against a measured test error of {fmt(row['measured_test_mse'])} ({gap:+.0%}).")
    figures = {}
    if rows:
        figures["decomposition"] = _decomposition_figure(rows)
        fig, axes = new_figure(1, len(panels), size=(4.2, 3.6))
        for ax, (label, x, truth, predictions) in zip(axes[0], panels, strict=True):
            for p in predictions:
                ax.plot(x, p, color="C0", alpha=0.35, linewidth=0.8)
            ax.plot(x, predictions.mean(axis=0), color="C3", label="mean fit")
            ax.plot(x, truth, "k--", label="truth")
            ax.set_title(label, fontsize="small")
            ax.set_ylim(truth.min() - 1.0, truth.max() + 1.0)
        axes[0][0].legend(fontsize="x-small")
        figures["fits"] = to_png(fig)
    return Section("bias_variance", BIAS_VARIANCE_POINT, findings, rows, figures)


def _estimate(value: float) -> str:
    """A term estimated without bias can come out below zero when the true term is smaller
    than its noise: say so rather than print a negative square."""
    return fmt(value) if value >= 0 else f"≈ 0 (estimate {fmt(value)}, within its noise)"


def _decomposition_figure(rows: Sequence[dict[str, Any]]) -> bytes:
    """Stacked bars per capacity: bias², variance and noise, with the measured test error."""
    fig, axes = new_figure()
    ax = axes[0][0]
    positions = np.arange(len(rows))
    bottom = np.zeros(len(rows))
    for key, name, colour in (("bias2", "bias²", "C0"), ("variance", "variance", "C1"),
                              ("noise", "noise", "0.7")):
        heights = np.array([max(r[key], 0.0) for r in rows])
        ax.bar(positions, heights, bottom=bottom, color=colour, label=name, width=0.6)
        bottom += heights
    ax.plot(positions, [r["measured_test_mse"] for r in rows], "kD", markersize=8,
            label="measured test error")
    ax.set_xticks(positions, [f"{r['configuration']}\n{r['params']} parameters" for r in rows],
                  fontsize="small")
    ax.set_ylabel("squared error")
    ax.set_title("expected error = bias² + variance + noise")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    return to_png(fig)
