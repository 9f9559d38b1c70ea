"""Optimisers (conf/experiment/optimizers.yaml): SGD, momentum, Adam and L-BFGS from the same
initial weights on the same batches, compared by their loss curves (metrics.jsonl)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

from dltrain.experiments.figures import new_figure, positive_points, to_png
from dltrain.experiments.readers import Run, curve, read_metrics, scalars_at
from dltrain.experiments.section import Section, run_label
from dltrain.log.console import fmt
from dltrain.probes.tags import ACTIVATIONS, tag

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
        name = str(run.value("optim.name") or run_label(run, keys))
        steps, epochs = run.summary.get("steps") or 0, run.summary.get("epochs") or 0
        per_epoch = steps / epochs if epochs else None
        train = [(s / per_epoch, v) for s, v in curve(records, "train/loss")] if per_epoch \
            else []
        val = [(float(r["epoch"]), float(r["val/loss"])) for r in records
               if "val/loss" in r and "epoch" in r]
        curves.append((name, train, val))
        start = scalars_at(records, 0, tag(ACTIVATIONS, ""))
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
    fig, axes = new_figure(1, 2)
    for name, train, val in curves:
        # a loss of exactly 0 has no logarithm
        train, val = positive_points(train), positive_points(val)
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
    return Section("optimizers", OPTIMIZERS_POINT, findings, rows, {"curves": to_png(fig)})
