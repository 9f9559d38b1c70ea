"""The lectures' experiments (conf/experiment/): what each adds to its sweep's report.

A sweep run as `dltrain -m experiment=NAME` gets, below the usual table, a section that states
the lecture's point and shows it with the sweep's own numbers: figures in plots/, the numbers
behind them in experiment.csv, and sentences with the measured values in report.md.

Plain functions over plain data: the jobs of a sweep (dltrain.report.Job) and what their probes
wrote (metrics.jsonl, fit.npz). No torch, no Hydra; matplotlib only where a figure is drawn.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dltrain.io import atomic_write
from dltrain.log.console import fmt
from dltrain.report import SEED_KEYS, Job, Report


@dataclass(frozen=True)
class Run:
    """A completed job of the sweep and where its files are."""

    job: Job
    path: Path

    def value(self, key: str) -> Any:
        return self.job.value(key)

    @property
    def summary(self) -> dict[str, Any]:
        return self.job.summary


@dataclass(frozen=True)
class Section:
    """An experiment's part of the report."""

    name: str
    point: str  # the lecture's point, one paragraph
    findings: list[str]  # what this sweep measured: sentences with numbers
    rows: list[dict[str, Any]]  # the numbers behind the figures: experiment.csv
    figures: dict[str, bytes] = field(default_factory=dict)  # name -> PNG


# ---------------------------------------------------------------------------------------------
# What the probes left in a run directory


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.jsonl as a list of records ([] if there is none)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def scalars_at(records: Sequence[Mapping[str, Any]], step: int, prefix: str
               ) -> dict[str, float]:
    """The scalars logged at `step` whose tags start with `prefix`, in the order logged."""
    found: dict[str, float] = {}
    for record in records:
        if record.get("step") == step:
            found.update({k: v for k, v in record.items() if k.startswith(prefix)})
    return found


def layer_profile(records: Sequence[Mapping[str, Any]], probe: str, stat: str
                  ) -> list[tuple[str, float]]:
    """[(layer, value)] of `probe/<probe>/<layer>/<stat>` at step 0, in model order, the
    output layer `head` left out (it has the width of the task, not of the network)."""
    prefix = f"probe/{probe}/"
    values = scalars_at(records, 0, prefix)
    return [(tag[len(prefix):-len(stat) - 1], float(v)) for tag, v in values.items()
            if tag.endswith(f"/{stat}") and not tag[len(prefix):].startswith("head/")]


def curve(records: Sequence[Mapping[str, Any]], tag: str) -> list[tuple[int, float]]:
    """[(step, value)] of a logged scalar."""
    return [(int(r["step"]), float(r[tag])) for r in records
            if isinstance(r.get(tag), (int, float))]


def read_fit(run_dir: Path) -> dict[str, np.ndarray] | None:
    """fit.npz of the fit probe (None if the run has none)."""
    path = Path(run_dir) / "fit.npz"
    if not path.is_file():
        return None
    with np.load(path) as saved:
        return {k: saved[k] for k in saved.files}


# ---------------------------------------------------------------------------------------------
# Numbers


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


def per_layer_ratio(values: Sequence[float]) -> float | None:
    """The geometric mean factor from one layer to the next."""
    if len(values) < 2 or values[0] <= 0 or values[-1] <= 0:
        return None
    return (values[-1] / values[0]) ** (1.0 / (len(values) - 1))


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


def _mean(values: Sequence[float]) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _label(run: Run, keys: Sequence[str]) -> str:
    return ", ".join(f"{k}={run.value(k)}" for k in keys) or "all runs"


def _groups(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, list[Run]]:
    """Runs grouped by their values of `keys`, in sweep order."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(_label(run, keys), []).append(run)
    return groups


def _styles(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, dict[str, str]]:
    """Line styles by configuration: a colour per value of the last swept key, a dash pattern
    per value of the others, so that the eye can read both."""
    colour_key, others = (keys[-1], keys[:-1]) if keys else (None, [])
    colours: dict[str, str] = {}
    dashes: dict[str, str] = {}
    styles = {}
    for run in runs:
        c = str(run.value(colour_key)) if colour_key else ""
        d = _label(run, others)
        colours.setdefault(c, f"C{len(colours) % 10}")
        dashes.setdefault(d, ("-", "--", ":", "-.")[len(dashes) % 4])
        styles[_label(run, keys)] = {"color": colours[c], "linestyle": dashes[d]}
    return styles


def _capacity_key(keys: Sequence[str]) -> str | None:
    for key in ("model.width", "model.hidden", "model.depth", "model.channels"):
        if key in keys:
            return key
    return None


# ---------------------------------------------------------------------------------------------
# Figures


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.4, 4.4)) -> Any:
    from matplotlib.figure import Figure  # lazy: only a report with figures draws

    fig = Figure(figsize=(size[0] * cols, size[1] * rows), dpi=100, layout="tight")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


def _positive(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    return [(x, y) for x, y in points if y > 0 and math.isfinite(y)]


def _log_safe(values: Sequence[float]) -> bool:
    finite = [v for v in values if math.isfinite(v)]
    return bool(finite) and min(finite) > 0 and max(finite) / min(finite) > 20


# ---------------------------------------------------------------------------------------------
# The experiments


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
        stds = layer_profile(records, "activations", "std")
        grads = layer_profile(records, "gradients", "norm")
        label = _label(run, keys)
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
    fig, axes = _figure(1, 2)
    styles = _styles(runs, keys)
    for label, (stds, grads) in profiles.items():
        for ax, profile in zip(axes[0], (stds, grads), strict=True):
            if profile:
                ax.plot(range(1, len(profile) + 1), [v for _, v in profile], marker="o",
                        markersize=4, label=label, **styles.get(label, {}))
    for ax, what in zip(axes[0], ("activation std", "gradient norm"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("layer")
        ax.set_ylabel(f"{what} at step 0")
        ax.set_title(f"{what} by depth at initialisation")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize="x-small")
    return Section("init_study", INIT_POINT, findings, rows, {"by_depth": _png(fig)})


def _fit_rows(runs: Sequence[Run], keys: Sequence[str], capacity: str | None
              ) -> list[dict[str, Any]]:
    """Per configuration (seeds averaged): capacity, parameters, train and test error of the
    final weights (fit.npz)."""
    rows = []
    other = [k for k in keys if k != capacity]
    for label, members in _groups(runs, keys).items():
        fits = [f for f in (read_fit(r.path) for r in members) if f is not None]
        if not fits:
            continue
        rows.append({"configuration": label,
                     "series": _label(members[0], other),
                     "capacity": members[0].value(capacity) if capacity else None,
                     "params": members[0].summary.get("params"),
                     "train_points": len(fits[0]["train_x"]),
                     "train_mse": _mean([float(f["train_mse"]) for f in fits]),
                     "test_mse": _mean([float(f["test_mse"]) for f in fits]),
                     "noise_var": float(fits[0]["noise"]) ** 2, "n": len(fits)})
    return sorted(rows, key=lambda r: (r["series"], r["params"] or 0))


def _error_figure(rows: Sequence[dict[str, Any]], title: str,
                  threshold: float | None = None) -> bytes:
    fig, axes = _figure()
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
    if _log_safe(errors):
        ax.set_yscale("log")
    ax.set_xlabel("parameters")
    ax.set_ylabel("mean squared error (final weights)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _png(fig)


OVERFITTING_POINT = (
    "Capacity trades bias for variance. A model too small for the function underfits: "
    "training and test error are both high. As capacity grows the training error keeps "
    "falling, while the test error falls, bottoms out and rises again once the model "
    "fits the noise of its few training points: the U-curve. A regulariser (here an L2 "
    "penalty on the weights) takes capacity back and flattens the rise. Errors are those of "
    "the final weights, train on the training points, test on a fresh test set; the dotted "
    "line is the noise variance, the error of the true function itself.")


def overfitting(runs: Sequence[Run], keys: Sequence[str]) -> Section:
    rows = _fit_rows(runs, keys, _capacity_key(keys))
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
    rows = _fit_rows(runs, keys, _capacity_key(keys))
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
    capacity = _capacity_key(keys)
    rows, findings, panels = [], [], []
    for label, members in _groups(runs, keys).items():
        fits = [f for f in (read_fit(r.path) for r in members) if f is not None and "truth" in f]
        if not fits:
            continue
        predictions = np.stack([f["pred"] for f in fits])
        terms = decompose(predictions, fits[0]["truth"], float(fits[0]["noise"]))
        measured = _mean([float(f["test_mse"]) for f in fits])
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
        fig, axes = _figure(1, len(panels), size=(4.2, 3.6))
        for ax, (label, x, truth, predictions) in zip(axes[0], panels, strict=True):
            for p in predictions:
                ax.plot(x, p, color="C0", alpha=0.35, linewidth=0.8)
            ax.plot(x, predictions.mean(axis=0), color="C3", label="mean fit")
            ax.plot(x, truth, "k--", label="truth")
            ax.set_title(label, fontsize="small")
            ax.set_ylim(truth.min() - 1.0, truth.max() + 1.0)
        axes[0][0].legend(fontsize="x-small")
        figures["fits"] = _png(fig)
    return Section("bias_variance", BIAS_VARIANCE_POINT, findings, rows, figures)


def _estimate(value: float) -> str:
    """A term estimated without bias can come out below zero when the true term is smaller
    than its noise: say so rather than print a negative square."""
    return fmt(value) if value >= 0 else f"≈ 0 (estimate {fmt(value)}, within its noise)"


def _decomposition_figure(rows: Sequence[dict[str, Any]]) -> bytes:
    """Stacked bars per capacity: bias², variance and noise, with the measured test error."""
    fig, axes = _figure()
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
    return _png(fig)


OPTIMIZERS_POINT = (
    "The same network, the same initial weights and the same batches, four optimisers. "
    "SGD follows the gradient; momentum accumulates it and moves faster along consistent "
    "directions; Adam scales every parameter's step by its running gradient statistics; "
    "L-BFGS builds a curvature model from past gradients and takes full-batch steps with a "
    "line search (each of its steps evaluates the loss many times: compare by epochs, and "
    "mind its cost per epoch).")


def optimizers(runs: Sequence[Run], keys: Sequence[str]) -> Section:
    rows, findings, curves = [], [], []
    starts = set()
    for run in runs:
        records = read_metrics(run.path)
        name = str(run.value("optim.name") or _label(run, keys))
        steps, epochs = run.summary.get("steps") or 0, run.summary.get("epochs") or 0
        per_epoch = steps / epochs if epochs else None
        train = [(s / per_epoch, v) for s, v in curve(records, "train/loss")] if per_epoch \
            else []
        val = [(float(r["epoch"]), float(r["val/loss"])) for r in records
               if "val/loss" in r and "epoch" in r]
        curves.append((name, train, val))
        start = scalars_at(records, 0, "probe/activations/")
        if start:
            starts.add(json.dumps(start, sort_keys=True))
        best = run.summary.get("val") or {}
        rows.append({"optimizer": name, "lr": run.value("optim.lr"), "steps": steps,
                     "epochs": epochs, "final_train_loss": train[-1][1] if train else None,
                     "final_val_loss": val[-1][1] if val else None,
                     "best_val_accuracy": best.get("accuracy"), "wall_s": run.summary.get(
                         "wall_s")})
    for row in sorted(rows, key=lambda r: r["final_train_loss"] or math.inf):
        findings.append(f"{row['optimizer']} (lr {row['lr']}): training loss "
                        f"{fmt(row['final_train_loss'])} after {row['epochs']} epochs "
                        f"({row['steps']} steps), best validation accuracy "
                        f"{fmt(row['best_val_accuracy'])}, {fmt(row['wall_s'])} s.")
    if len(starts) == 1 and len(runs) > 1:
        findings.append("Every run started from the same weights: their activation statistics "
                        "at step 0 agree to the last digit.")
    elif len(starts) > 1:
        findings.append("The runs did not start from the same weights (their step-0 activation "
                        "statistics differ): compare with care.")
    fig, axes = _figure(1, 2)
    for name, train, val in curves:
        train, val = _positive(train), _positive(val)  # a loss of exactly 0 has no logarithm
        if train:
            axes[0][0].plot(*zip(*train, strict=True), label=name)
        if val:
            axes[0][1].plot(*zip(*val, strict=True), marker=".", label=name)
    for ax, what in zip(axes[0], ("training loss", "validation loss"), strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel(what)
        ax.set_title(f"{what}, same start and same batches")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return Section("optimizers", OPTIMIZERS_POINT, findings, rows, {"curves": _png(fig)})


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
        norms = [v for _, v in layer_profile(records, "gradients", "norm")]
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
    fig, axes = _figure(1, 2)
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
    return Section("resnet_vs_plain", RESNET_POINT, findings, rows, {"depth": _png(fig)})


EXPERIMENTS: dict[str, Callable[[Sequence[Run], Sequence[str]], Section]] = {
    "init_study": init_study,
    "overfitting": overfitting,
    "double_descent": double_descent,
    "bias_variance": bias_variance,
    "optimizers": optimizers,
    "resnet_vs_plain": resnet_vs_plain,
}


# ---------------------------------------------------------------------------------------------
# Into the report


def experiment_of(jobs: Sequence[Job]) -> str | None:
    """The experiment every job of the sweep ran (`experiment=NAME`), or None."""
    names = {job.overrides.get("experiment") for job in jobs}
    return names.pop() if len(names) == 1 else None


def experiment_section(report: Report) -> Section | None:
    """The section of the experiment the sweep ran, from its completed runs (None if the
    sweep is not one of the experiments)."""
    name = experiment_of(report.jobs)
    if name not in EXPERIMENTS:
        return None
    directory = report.sweep_dir
    runs = [Run(job, directory if len(report.jobs) == 1 and not (directory / job.name).is_dir()
                else directory / job.name) for job in report.jobs if job.status == "completed"]
    keys = [k for k in report.keys if k not in SEED_KEYS]
    return EXPERIMENTS[name](runs, keys)


def _csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(columns), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def write_section(report: Report, images: dict[str, bytes]) -> str:
    """Write the experiment's figures (plots/<experiment>_<figure>.png) and experiment.csv;
    return its markdown for report.md (empty if the sweep is no experiment). The figures are
    added to `images` for the sweep's TensorBoard run."""
    section = experiment_section(report)
    if section is None:
        return ""
    plots = report.sweep_dir / "plots"
    plots.mkdir(exist_ok=True)
    lines = ["", f"## Experiment: {section.name}", "", section.point, ""]
    lines += [f"- {_escape(finding)}" for finding in section.findings]
    for figure, png in section.figures.items():
        path = plots / f"{section.name}_{figure}.png"
        path.write_bytes(png)
        images[f"report/{section.name}/{figure}"] = png
        lines += ["", f"![{section.name}: {figure}](plots/{path.name})"]
    if section.rows:
        text = _csv(section.rows).encode("utf-8")
        atomic_write(report.sweep_dir / "experiment.csv", lambda f: f.write(text))
        lines += ["", "The numbers behind the figures: experiment.csv."]
    return "\n".join(lines) + "\n"


def _escape(text: str) -> str:
    return re.sub(r"([|*_])", r"\\\1", text)
