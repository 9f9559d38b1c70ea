"""curves.png: drawn from the run's own points, at validations (throttled) and at the end, a
real PNG that Pillow reads; a resumed run starts from metrics.jsonl; the vectorised stack's
members get theirs at their end."""

from __future__ import annotations

import json
import math

import numpy as np
from PIL import Image

from dltrain.log import painter
from dltrain.log.curves import (
    META_KEY,
    Canvas,
    CurvesLogger,
    History,
    curves_figure,
    curves_png,
    second_metric,
)


def train_point(step: int) -> dict[str, float]:
    return {"train/loss": 2.0 / step ** 2, "train/lr": 0.1 * 0.9 ** step, "perf/samples_per_s": 1e3}


def val_point(step: int) -> dict[str, float]:
    return {"epoch": step / 10, "val/loss": 3.0 / step, "val/accuracy": 1 - 1 / step}


def drawn(path) -> dict[str, int]:
    """What a curves.png says it was drawn from, read back with Pillow."""
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.size == (960, 272)
        return json.loads(image.text[META_KEY])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_figure_holds_exactly_the_logged_points():
    history = History()
    for step in range(1, 13):
        history.add(train_point(step), step)
        if step % 4 == 0:
            history.add(val_point(step), step)
    fig = curves_figure(history, "val/accuracy")
    loss, metric, lr = fig.axes
    lines = {line.get_label(): line for ax in fig.axes for line in ax.get_lines()}
    assert [ax.get_title() for ax in fig.axes] == ["loss", "val/accuracy (monitored)",
                                                  "learning rate"]
    np.testing.assert_allclose(lines["train"].get_xdata(), np.arange(1, 13))
    np.testing.assert_allclose(lines["train"].get_ydata(), [2.0 / s ** 2 for s in range(1, 13)])
    np.testing.assert_allclose(lines["validation"].get_xdata(), [4, 8, 12])
    np.testing.assert_allclose(lines["validation"].get_ydata(), [3 / 4, 3 / 8, 3 / 12])
    np.testing.assert_allclose(lines["val/accuracy"].get_ydata(), [1 - 1 / s for s in (4, 8, 12)])
    np.testing.assert_allclose(lines["lr"].get_ydata(), [0.1 * 0.9 ** s for s in range(1, 13)])
    assert lr.get_yscale() == "linear"  # 0.9^12 = 0.28: not spread enough for a log scale
    assert loss.get_yscale() == "log"  # 2 down to 2/144: spread over 20x
    assert metric.get_yscale() == "linear"


def test_a_monitored_validation_loss_leaves_the_middle_panel_to_another_metric():
    history = History()
    history.add(train_point(1), 1)
    history.add(val_point(1), 1)
    assert second_metric(history, "val/loss") == "val/accuracy"
    only_loss = History()
    only_loss.add({"val/loss": 1.0}, 1)
    assert second_metric(only_loss, "val/loss") is None
    assert len(curves_figure(only_loss, "val/loss").axes) == 2


def test_drawn_at_validations_at_most_every_interval_and_always_at_the_end(tmp_path):
    path, clock = tmp_path / "curves.png", Clock()
    sink = CurvesLogger(path, "val/accuracy", "run", min_interval_s=10, cost_factor=0,
                        clock=clock)
    for step in (5, 10):
        sink.log_metrics(train_point(step), step)
    assert not path.exists()  # log points alone do not draw
    sink.log_metrics(val_point(8), 8)
    assert not path.exists()  # a validation before min_interval_s since the start: none yet
    clock.now = 10.0
    sink.log_metrics(val_point(10), 10)
    assert drawn(path) == {"train/loss": 2, "train/lr": 2, "val/loss": 2, "val/accuracy": 2}
    first = path.read_bytes()

    clock.now = 15.0  # a validation 5 s later: too soon
    sink.log_metrics(train_point(15), 15)
    sink.log_metrics(val_point(15), 15)
    assert path.read_bytes() == first
    clock.now = 26.0  # 16 s after the drawing: due
    sink.log_metrics(train_point(20), 20)
    sink.log_metrics(val_point(20), 20)
    assert drawn(path) == {"train/loss": 4, "train/lr": 4, "val/loss": 4, "val/accuracy": 4}
    second = path.read_bytes()
    assert second != first

    sink.log_metrics({"test/loss": 0.1}, 20)  # not drawn: nothing new for the picture
    sink.close()
    assert path.read_bytes() == second
    late = CurvesLogger(tmp_path / "late.png", "val/accuracy", min_interval_s=math.inf,
                        clock=clock)
    late.log_metrics(train_point(5), 5)
    late.log_metrics(val_point(5), 5)
    late.log_metrics(val_point(6), 6)
    assert not (tmp_path / "late.png").exists()  # never due: a short run draws at its end
    late.log_metrics(train_point(7), 7)
    late.close()  # the end draws everything
    assert drawn(tmp_path / "late.png")["train/loss"] == 2
    assert drawn(tmp_path / "late.png")["val/loss"] == 2


def test_a_stack_member_draws_at_its_end_only(tmp_path):
    """A vectorised stack's members (at_validations=False): no picture at any validation, the
    first one included, one at the end."""
    path = tmp_path / "curves.png"
    pictures = painter.Pictures()
    sink = CurvesLogger(path, "val/accuracy", at_validations=False, pictures=pictures)
    for step in (5, 10):
        sink.log_metrics(train_point(step), step)
        sink.log_metrics(val_point(step), step)
    assert not path.exists() and pictures.watched == [sink]
    pictures.draw()  # the stack's end asks every member's sink for its picture
    assert drawn(path) == {"train/loss": 2, "train/lr": 2, "val/loss": 2, "val/accuracy": 2}
    assert not sink.fresh
    path.unlink()
    sink.close()  # drawn already: nothing more at the close
    assert not path.exists()


def test_a_stack_member_nobody_asked_draws_its_picture_at_its_close(tmp_path):
    path = tmp_path / "curves.png"
    sink = CurvesLogger(path, "val/accuracy", at_validations=False,
                        pictures=painter.Pictures())
    sink.log_metrics(train_point(5), 5)
    sink.log_metrics(val_point(5), 5)
    sink.close()
    assert drawn(path) == {"train/loss": 1, "train/lr": 1, "val/loss": 1, "val/accuracy": 1}


def history_of(steps: int, spread: bool) -> History:
    history = History()
    for step in range(1, steps + 1):
        point = train_point(step) if spread else {"train/loss": 1 + 0.01 * step, "train/lr": 0.1}
        history.add(point, step)
        if step % 3 == 0:
            history.add(val_point(step), step)
    return history


def test_a_canvas_drawn_again_gives_the_picture_a_fresh_figure_gives():
    """The canvas redraws one figure for member after member: what an earlier member drew
    (its lines, legend, log scales, limits, title) must not show in the next picture."""
    canvas = Canvas()
    first, second = history_of(40, spread=True), history_of(12, spread=False)
    canvas.png(first, "val/accuracy", "first")
    assert canvas.png(second, "val/accuracy", "second") == curves_png(second, "val/accuracy",
                                                                     "second")
    only_loss = History()  # other panels: a figure of its own
    only_loss.add({"val/loss": 1.0, "train/lr": 0.1}, 1)
    assert canvas.png(only_loss, "val/loss") == curves_png(only_loss, "val/loss")


def test_the_interval_grows_with_what_a_drawing_costs(tmp_path):
    clock = Clock()
    sink = CurvesLogger(tmp_path / "c.png", "val/loss", min_interval_s=1, cost_factor=50,
                        clock=clock)
    clock.now = 1.0
    sink.log_metrics(val_point(1), 1)
    sink.draw_s[-1] = 0.2  # a drawing of 0.2 s: the next one waits 50 x 0.2 = 10 s
    clock.now = 10.0
    assert not sink.due()
    clock.now = 11.5
    assert sink.due()


def test_a_resumed_run_starts_its_picture_from_metrics_jsonl(tmp_path):
    lines = [{"step": s, "time": 1.0, **train_point(s)} for s in (5, 10, 15, 20)]
    lines.insert(2, {"step": 10, "time": 1.0, **val_point(10)})
    lines.append({"step": 20, "time": 1.0, **val_point(20)})
    lines.append({"step": 20, "time": 1.0, "val/loss": "nan", "val/accuracy": 0.5})
    (tmp_path / "metrics.jsonl").write_text(
        "\n".join(json.dumps(r) for r in lines) + "\n{\"step\": 2")  # a line cut by a crash
    sink = CurvesLogger(tmp_path / "curves.png", "val/accuracy", start_step=10)
    # steps after the checkpoint (15, 20) were trained again after the resume: not kept
    assert sink.history.counts() == {"train/loss": 2, "train/lr": 2, "val/loss": 1,
                                     "val/accuracy": 1}
    assert sink.history.series["val/loss"] == [(10, 0.3)]
    everything = History.from_jsonl(tmp_path / "metrics.jsonl", 10 ** 9)
    assert math.isnan(everything.series["val/loss"][-1][1])  # "nan" as JSON writes it


def test_a_drawing_that_fails_is_a_warning_not_the_end_of_the_run(tmp_path, caplog):
    blocked = tmp_path / "file"
    blocked.write_text("not a directory")
    sink = CurvesLogger(blocked / "curves.png", "val/loss")
    sink.log_metrics(val_point(1), 1)
    sink.log_metrics(val_point(2), 2)
    sink.close()
    assert sink.failed and "no curves.png" in caplog.text


def test_each_member_of_a_vectorised_stack_gets_its_curves_at_its_end(make_cfg, tmp_path):
    from dltrain.vectorised.train import train_stack

    small = ("data=moons", "data.n_train=300", "data.n_test=200", "trainer.device=cpu",
             "trainer.log_every=3", "trainer.max_epochs=2", "model.hidden=[8,8]", "name=stack")
    cfgs = [make_cfg(*small, f"optim.lr={lr}") for lr in (0.01, 0.001)]
    dirs = [tmp_path / "a", tmp_path / "b"]
    results = train_stack(cfgs, dirs)
    assert [r.status for r in results] == ["completed", "completed"]
    for run_dir, result in zip(dirs, results, strict=True):
        counts = drawn(run_dir / "curves.png")
        logged: dict[str, int] = {}
        for line in (run_dir / "metrics.jsonl").read_text().splitlines():
            for tag in json.loads(line):
                if tag in ("train/loss", "train/lr") or tag.startswith("val/"):
                    logged[tag] = logged.get(tag, 0) + 1
        assert counts == logged and counts["val/loss"] == 2  # both validations, all points
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["name"] == result.summary["name"] == "stack"
        assert summary["startup_s"] >= 0 and summary["wall_s"] > 0
    lines = (dirs[0] / "train.log").read_text()
    assert "epoch 1/2  step" in lines and "epoch 2/2  step" in lines
