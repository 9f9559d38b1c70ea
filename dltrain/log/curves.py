"""curves.png: a run's learning curves as one picture, so that a run can be judged without
starting TensorBoard.

A logger sink: it keeps the points the run logs anyway (train/loss and train/lr at log
points, val/ metrics at validations) and draws, against optimiser steps, the training and
validation loss, the monitored metric and the learning rate. It draws at a validation when
at least `min_interval_s` of wall time (and 50 times what the last drawing took) passed since
its last drawing (or its start), and always at the end (`close`) if anything new came in.
A drawing costs 0.1-0.5 s (measured on 2 shared CPU cores: savefig's text and PNG encoding,
not the data) plus matplotlib's import once: nothing at one validation a minute, too much at
several a second, so the sink spends at most about 2% of a run's wall time drawing. The PNG is
written atomically; a resumed run starts its picture from metrics.jsonl, up to the step it
resumes at.

matplotlib (Agg, no pyplot, no global state) is imported only when the first picture is drawn.
"""

from __future__ import annotations

import io
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dltrain.io import atomic_write
from dltrain.log import NullLogger

log = logging.getLogger("dltrain")

CURVES_FILE = "curves.png"
MIN_INTERVAL_S = 10.0  # wall time between two drawings at validations (the end always draws)
COST_FACTOR = 50  # ... and at least this many times what the last drawing took
PAINT_WAIT_S = 60.0  # the longest a run's end waits for the painter's last picture
META_KEY = "dltrain"  # the PNG text chunk that says what was drawn (points per series)
_SIZE = (12.0, 3.4)  # inches; at _DPI: 960 x 272 pixels
_DPI = 80

Points = list[tuple[int, float]]


@dataclass
class History:
    """The points a run logged that the picture shows, by tag, in step order."""

    series: dict[str, Points] = field(default_factory=dict)

    def add(self, metrics: Mapping[str, float], step: int) -> bool:
        """Keep the plotted tags of one logged record; whether any was there."""
        added = False
        for tag, value in metrics.items():
            if tag in ("train/loss", "train/lr") or tag.startswith("val/"):
                try:
                    number = float(value)
                except (TypeError, ValueError):  # metrics.jsonl writes nan as "nan": float()
                    continue
                self.series.setdefault(tag, []).append((int(step), number))
                added = True
        return added

    def counts(self) -> dict[str, int]:
        return {tag: len(points) for tag, points in self.series.items()}

    @classmethod
    def from_jsonl(cls, path: Path, upto_step: int) -> History:
        """The points of a run's metrics.jsonl up to `upto_step` (a resumed run drops what it
        logged after its checkpoint, as TensorBoard purges those steps)."""
        history = cls()
        if not path.is_file():
            return history
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:  # a line cut short by a crash
                continue
            step = record.pop("step", None)
            if isinstance(step, int) and step <= upto_step:
                history.add({k: v for k, v in record.items() if k != "time"}, step)
        return history


def second_metric(history: History, monitor: str) -> str | None:
    """The metric of the middle panel: the monitored one, or when that is the validation
    loss (drawn beside the training loss already) the first other validation metric."""
    if monitor != "val/loss" and monitor in history.series:
        return monitor
    others = [t for t in history.series if t.startswith("val/") and t != "val/loss"]
    return others[0] if others else None


def _log_scale_ok(points: Points) -> bool:
    values = [v for _, v in points if math.isfinite(v)]
    return bool(values) and min(values) > 0 and max(values) / min(values) > 20


def panels_of(history: History, monitor: str) -> list[str]:
    """The panels a picture of `history` has: loss, the second metric if any, lr."""
    metric = second_metric(history, monitor)
    return ["loss", *([metric] if metric else []), "lr"]


def curves_figure(history: History, monitor: str, title: str = "") -> Any:
    """The figure: loss (train and val), the monitored metric, the learning rate."""
    from matplotlib.figure import Figure  # lazy: only a run that draws loads matplotlib

    panels = panels_of(history, monitor)
    fig = Figure(figsize=_SIZE, dpi=_DPI)
    # margins by hand: a tight layout triples the time a drawing takes; room for a title
    # always, so that one figure can be drawn again with or without one (Canvas)
    fig.subplots_adjust(left=0.06, right=0.99, bottom=0.16, top=0.80, wspace=0.28)
    axes = fig.subplots(1, len(panels), squeeze=False, sharex=True)[0]  # one step axis
    for ax in axes:
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        # labels at fixed places: placing them by the tick labels' extents measures every
        # label's text again at each drawing (a fifth of what a drawing costs)
        ax.xaxis.set_label_coords(0.5, -0.14)
        ax.yaxis.set_label_coords(-0.1, 0.5)
        ax.xaxis.set_major_locator(_locator())
        ax.yaxis.set_major_locator(_locator())
    fig.suptitle(title, fontsize="medium", y=0.97)
    plot_history(fig, history, monitor, title)
    return fig


def _locator() -> Any:
    """Ticks of a linear axis: at most 5 (matplotlib's own choice is about 8 on these
    panels, and each tick label is text to lay out and render at every drawing)."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=5, steps=[1, 2, 2.5, 5, 10])


def plot_history(fig: Any, history: History, monitor: str, title: str) -> None:
    """Draw `history` into the axes of a figure made by curves_figure, replacing what an
    earlier call drew there (its lines, legends, scales and titles)."""
    metric = second_metric(history, monitor)
    axes = fig.axes
    s = history.series
    for ax in axes:
        for line in list(ax.get_lines()):
            line.remove()
        if ax.get_legend() is not None:
            ax.get_legend().remove()

    def draw(ax: Any, tag: str, label: str, **style: Any) -> None:
        points = s.get(tag) or []
        if points:
            ax.plot([p[0] for p in points], [p[1] for p in points], label=label, **style)

    def scale(ax: Any, points: Points) -> None:
        wanted = "log" if _log_scale_ok(points) else "linear"
        if ax.get_yscale() != wanted:  # set_yscale resets the axis' locators: only on change
            ax.set_yscale(wanted)
            if wanted == "log":  # labels as plain text (1e-05): the default's TeX-like
                from matplotlib.ticker import LogFormatter, NullFormatter  # 10^-5 costs a
                ax.yaxis.set_major_formatter(LogFormatter())  # parser's import and a parse
                ax.yaxis.set_minor_formatter(NullFormatter())  # per label and picture
            else:
                ax.yaxis.set_major_locator(_locator())
        ax.relim()
        ax.autoscale_view()

    loss_ax = axes[0]
    draw(loss_ax, "train/loss", "train", color="C0", linewidth=1.2)
    draw(loss_ax, "val/loss", "validation", color="C1", marker="o", markersize=3.5,
         linewidth=1.2)
    loss_ax.set_title("loss", y=1.0)  # y given: a fixed place, not one measured each time
    scale(loss_ax, (s.get("train/loss") or []) + (s.get("val/loss") or []))
    if s.get("train/loss") or s.get("val/loss"):
        loss_ax.legend(fontsize="small", loc="upper right")
    if metric:
        ax = axes[1]
        draw(ax, metric, metric, color="C2", marker="o", markersize=3.5, linewidth=1.2)
        ax.set_title(metric + (" (monitored)" if metric == monitor else ""), y=1.0)
        scale(ax, s.get(metric) or [])
    lr_ax = axes[-1]
    draw(lr_ax, "train/lr", "lr", color="C4", linewidth=1.2)
    lr_ax.set_title("learning rate", y=1.0)
    scale(lr_ax, s.get("train/lr") or [])
    fig._suptitle.set_text(title)


def _png(fig: Any, history: History) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", metadata={META_KEY: json.dumps(history.counts())},
                pil_kwargs={"compress_level": 1})  # zlib's fastest: half the encoding time
    return out.getvalue()


def curves_png(history: History, monitor: str, title: str = "") -> bytes:
    """The figure as PNG bytes, with a text chunk (META_KEY) holding the number of points
    drawn of each series: a reader, or a test, can tell what the picture was drawn from."""
    return _png(curves_figure(history, monitor, title), history)


class Canvas:
    """One figure drawn again for picture after picture: the members of a vectorised stack
    each get their curves.png at their end, one after the other, and building the axes and
    their ticks is a third of what a fresh figure costs (0.10 s against 0.16 s a picture
    on 2 CPU cores). Pictures with other panels get a figure of their own."""

    def __init__(self) -> None:
        self.fig: Any = None
        self.panels: list[str] = []

    def png(self, history: History, monitor: str, title: str = "") -> bytes:
        panels = panels_of(history, monitor)
        if self.fig is None or panels != self.panels:
            self.fig, self.panels = curves_figure(history, monitor, title), panels
        else:
            plot_history(self.fig, history, monitor, title)
        return _png(self.fig, history)


class Later(Protocol):
    """Where sinks' end pictures are drawn together, later (dltrain.log.painter.Pictures): a
    sink is watched from its start, and hands its picture over when asked (hand_over)."""

    def watch(self, sink: CurvesLogger) -> None: ...


class Elsewhere(Protocol):
    """A process that draws pictures for this one (dltrain.log.painter.Painter): paint()
    hands it one (a copy of the points) and gives its Future."""

    def paint(self, path: Path, history: History, monitor: str, title: str) -> Future: ...


class CurvesLogger(NullLogger):
    """Writes RUN_DIR/curves.png at validations (at most every `min_interval_s`) and at the
    end. A drawing that fails is a warning, never the end of the run.

    `at_validations=False` draws at the end only: a stack validates all its members at once,
    and a picture each at every validation would multiply the drawing time by its size (64
    members drawing at their first validation were half of a 64-job sweep's time). With
    `pictures`, the end's picture is handed to it when it asks (before the run's sinks
    close: MLflow's sends curves.png), to be drawn with the others. With a
    `painter`, every picture is drawn by that process while the run goes on, and the end
    waits for the last one (drawing it itself if the painter failed)."""

    def __init__(self, path: Path, monitor: str, title: str = "", start_step: int = 0,
                 min_interval_s: float = MIN_INTERVAL_S, cost_factor: float = COST_FACTOR,
                 clock: Callable[[], float] = time.monotonic, at_validations: bool = True,
                 pictures: Later | None = None, painter: Elsewhere | None = None) -> None:
        self.path, self.monitor, self.title = Path(path), monitor, title
        self.at_validations, self.pictures, self.painter = at_validations, pictures, painter
        self.painting: list[Future] = []  # the painter's pictures not known to be written
        if pictures is not None:
            pictures.watch(self)
        self.min_interval_s, self.cost_factor, self.clock = min_interval_s, cost_factor, clock
        self.history = History.from_jsonl(self.path.parent / "metrics.jsonl", start_step) \
            if start_step else History()
        self.started = clock()
        self.drawn_at: float | None = None  # clock time of the last drawing
        self.fresh = False  # points came in since the last drawing
        self.failed = False
        self.draw_s: list[float] = []  # seconds each drawing took (for the cost measurement)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.fresh = self.history.add(metrics, step) or self.fresh
        if self.at_validations and "val/loss" in metrics and self.due():
            self.draw()

    def due(self) -> bool:
        if self.drawn_at is None:  # a short run (trainer=smoke) draws once, at its end
            return self.clock() - self.started >= self.min_interval_s
        wait = max(self.min_interval_s, self.cost_factor * (self.draw_s[-1] if self.draw_s else 0))
        return self.clock() - self.drawn_at >= wait

    def draw(self) -> None:
        if self.failed:
            return
        if self.painter is not None:
            try:
                self.painting = [f for f in self.painting if not f.done() or f.exception()]
                self.painting.append(self.painter.paint(self.path, self.history, self.monitor,
                                                        self.title))
                self.drawn_at, self.fresh = self.clock(), False
                return
            except Exception as err:  # the painter is gone: drawn here from now on
                log.debug(f"painter: {type(err).__name__}: {err}")
                self.painter = None
        started = time.perf_counter()
        try:
            png = curves_png(self.history, self.monitor, self.title)
            atomic_write(self.path, lambda f: f.write(png))
        except Exception as err:  # a picture is a view of the run, never a reason to lose it
            self.failed = True
            log.warning(f"no {self.path.name}: {type(err).__name__}: {err}")
            return
        self.draw_s.append(time.perf_counter() - started)
        self.drawn_at, self.fresh = self.clock(), False

    def training_over(self) -> None:
        """Every point is in (a test adds none): with a painter, the last picture is handed
        to it now, drawn while the run tests and writes its files; close() then waits."""
        if self.painter is not None and self.fresh and self.history.series:
            self.draw()

    def hand_over(self) -> tuple[Path, History, str, str] | None:
        """The end's picture, for `pictures` to draw with the others (None: nothing new)."""
        if not (self.fresh and self.history.series):
            return None
        self.fresh = False
        return self.path, self.history, self.monitor, self.title

    def close(self) -> None:
        if self.fresh and self.history.series:  # (where no one asked for it: drawn here)
            self.draw()
        if self.painting and not self._painted():  # the last picture drawn here after all
            self.painter = None
            if self.history.series:
                self.draw()

    def _painted(self) -> bool:
        """Wait for the painter's pictures; whether all were written."""
        try:
            for future in self.painting:
                future.result(timeout=PAINT_WAIT_S)
            return True
        except Exception as err:  # failed, timed out, or the painter is gone
            log.debug(f"painter: {type(err).__name__}: {err}")
            return False
        finally:
            self.painting = []
