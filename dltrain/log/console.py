"""The terminal: a rich progress bar over optimiser steps, one line per validation, a results table.

On a terminal the bar redraws in place; in a non-interactive log (CI, a batch job) it is off and
only the per-validation lines appear, so the log does not fill up with redraws.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from dltrain.log import NullLogger

log = logging.getLogger("dltrain")


class ConsoleHandler(logging.Handler):
    """Log records through rich's console: above a live progress bar, never wrapped mid-line.

    (Named in conf/hydra/job_logging/dltrain.yaml; the file handler there writes train.log.)
    """

    def emit(self, record: logging.LogRecord) -> None:
        from rich import get_console

        try:
            style = "bold red" if record.levelno >= logging.ERROR else (
                "yellow" if record.levelno >= logging.WARNING else None)
            get_console().print(self.format(record), soft_wrap=True, highlight=False,
                                markup=False, style=style)
        except Exception:
            self.handleError(record)


def fmt(value: Any) -> str:
    """A metric for people: 4 significant digits, thousands as k."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 10_000:
            return f"{value / 1000:.1f}k"
        return f"{value:.4g}"
    return str(value)


class ConsoleLogger(NullLogger):
    def __init__(self, total_steps: int, start_step: int = 0, max_epochs: int | None = None,
                 console: Console | None = None) -> None:
        from rich import get_console

        self.console = console or get_console()
        self.max_epochs, self.total_steps = max_epochs, total_steps
        self.last_train: dict[str, float] = {}
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TimeRemainingColumn(),
            console=self.console,
            disable=not self.console.is_terminal,
        )
        self.task = self.progress.add_task("train", total=total_steps, completed=start_step,
                                           loss="-")
        self.progress.start()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if "train/loss" in metrics:
            self.last_train = dict(metrics)
            self.progress.update(self.task, completed=step, loss=fmt(metrics["train/loss"]))
        if "val/loss" in metrics:
            log.info(validation_line(metrics, step, self.last_train, self.max_epochs,
                                     self.total_steps))

    def close(self) -> None:
        self.progress.stop()


def ends_by_steps(epoch: float | None, step: int, max_epochs: int | None,
                  total_steps: int | None) -> bool:
    """Whether the run's step budget (trainer.max_steps) ends it before max_epochs: then
    "epoch 0.714/2" would promise a second epoch that never comes."""
    if not total_steps or not epoch or not max_epochs:
        return False
    steps_per_epoch = step / epoch
    return total_steps < max_epochs * steps_per_epoch * 0.999


def progress_text(epoch: float | None, step: int, max_epochs: int | None,
                  total_steps: int | None) -> list[str]:
    """Where a validation is: `epoch 3/10  step 420` when epochs end the run; `step 20/20
    (0.714 epoch)` when the step budget ends it first (a smoke run, a run shorter than an
    epoch)."""
    if ends_by_steps(epoch, step, max_epochs, total_steps):
        return [f"step {step}/{total_steps} ({fmt(float(epoch or 0))} epoch"
                + ("s)" if (epoch or 0) > 1 else ")")]
    if epoch is None:
        return [f"step {step}"]
    whole = float(epoch).is_integer()
    shown = str(int(epoch)) if whole else fmt(float(epoch))
    of = f"/{max_epochs}" if max_epochs else ""
    return [f"epoch {shown}{of}", f"step {step}"]


def validation_line(metrics: Mapping[str, float], step: int, last_train: Mapping[str, float],
                    max_epochs: int | None, total_steps: int | None = None) -> str:
    """The line of one validation: epoch, step, the last training loss, val metrics, speed."""
    parts = progress_text(metrics.get("epoch"), step, max_epochs, total_steps)
    if "train/loss" in last_train:
        parts.append(f"train/loss {fmt(last_train['train/loss'])}")
    parts += [f"{k} {fmt(v)}" for k, v in metrics.items() if k.startswith("val/")]
    if "perf/samples_per_s" in last_train:
        parts.append(f"{fmt(last_train['perf/samples_per_s'])} samples/s")
    return "  ".join(p for p in parts if p)


class LineLogger(NullLogger):
    """The console's validation lines, appended to a file (`[HH:MM:SS] line`, as train.log
    has them): the log of a run whose lines do not pass through the terminal, such as a
    member of a vectorised stack."""

    def __init__(self, path: Path, max_epochs: int | None = None,
                 total_steps: int | None = None) -> None:
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 (lives with the run)
        self.max_epochs, self.total_steps = max_epochs, total_steps
        self.last_train: dict[str, float] = {}

    def line(self, text: str) -> None:
        self.file.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        if "train/loss" in metrics:
            self.last_train = dict(metrics)
        if "val/loss" in metrics:
            self.line(validation_line(metrics, step, self.last_train, self.max_epochs,
                                      self.total_steps))

    def close(self) -> None:
        self.file.close()


def results_table(summary: Mapping[str, Any]) -> Table:
    """The end of a run at a glance: status, best, validation and test metrics, speed."""
    table = Table(title=f"dltrain · {summary.get('status', '?')}", show_header=True,
                  header_style="bold")
    table.add_column("")
    table.add_column("value", justify="right")
    best = summary.get("best") or {}
    if best.get("value") is not None:
        table.add_row(f"best {best['metric']}", f"{fmt(best['value'])} (step {best['step']})")
    for split in ("val", "test"):
        for key, value in (summary.get(split) or {}).items():
            table.add_row(f"{split}/{key}", fmt(value))
    if summary.get("name"):
        table.add_row("name", str(summary["name"]))
    for key in ("epochs", "steps", "params", "samples_per_s", "wall_s", "startup_s", "device"):
        if summary.get(key) is not None:
            table.add_row(key, epochs_text(summary) if key == "epochs" else fmt(summary[key]))
    return table


def epochs_text(summary: Mapping[str, Any]) -> str:
    """summary.json's `epochs` counts whole epochs; a run that trained but stopped within its
    first epoch (a smoke run, max_steps below an epoch) trained "< 1", not 0."""
    epochs, steps = summary.get("epochs"), summary.get("steps") or 0
    return "< 1" if epochs == 0 and steps > 0 else fmt(epochs)
