"""Pictures drawn outside the run's own work: the painter process of a single run (curves.png
drawn beside the training, the run's end waiting for the last one, drawn by the run itself
when the painter is gone) and a stack's pictures drawn together, half by a forked copy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from PIL import Image

from dltrain.log import painter
from dltrain.log.curves import CurvesLogger, curves_png
from dltrain.log.painter import Painter, Pictures
from tests.log.test_curves import Clock, drawn, history_of, train_point, val_point


@pytest.fixture
def a_painter():
    started = Painter.start()
    if started is None:
        pytest.skip("a painter process needs Linux and two cores")
    yield started
    started.close()


def test_the_painter_draws_the_points_it_was_handed(tmp_path, a_painter):
    history = history_of(30, spread=True)
    expected = curves_png(history, "val/accuracy", "run")
    future = a_painter.paint(tmp_path / "c.png", history, "val/accuracy", "run")
    history.add(train_point(31), 31)  # after paint(): not in the picture
    future.result(timeout=120)
    assert (tmp_path / "c.png").read_bytes() == expected


def test_a_run_with_a_painter_draws_at_validations_and_waits_at_its_end(tmp_path, a_painter):
    clock = Clock()
    path = tmp_path / "curves.png"
    sink = CurvesLogger(path, "val/accuracy", min_interval_s=1, clock=clock, painter=a_painter)
    for step in range(1, 4):
        clock.now += 2
        sink.log_metrics(train_point(step), step)
        sink.log_metrics(val_point(step), step)
    assert len(sink.painting) >= 1 and sink.draw_s == []  # handed over, not drawn here
    sink.log_metrics(train_point(4), 4)
    sink.close()
    assert drawn(path) == {"train/loss": 4, "train/lr": 4, "val/loss": 3, "val/accuracy": 3}
    assert sink.painting == []


def test_the_last_picture_is_handed_over_when_training_is_over(tmp_path, a_painter):
    """training_over(): the painter starts on the last picture while the run tests; the
    test's metrics add nothing to it, and close() only waits."""
    path = tmp_path / "curves.png"
    sink = CurvesLogger(path, "val/accuracy", painter=a_painter)
    sink.log_metrics(train_point(1), 1)
    sink.log_metrics(val_point(1), 1)
    sink.training_over()
    assert len(sink.painting) == 1 and not sink.fresh
    sink.log_metrics({"test/accuracy": 0.9, "test/loss": 0.1}, 1)
    assert not sink.fresh
    sink.close()
    assert drawn(path) == {"train/loss": 1, "train/lr": 1, "val/loss": 1, "val/accuracy": 1}


def test_a_run_whose_painter_is_gone_draws_its_picture_itself(tmp_path, a_painter):
    path = tmp_path / "curves.png"
    sink = CurvesLogger(path, "val/accuracy", painter=a_painter)
    for step in (1, 2):
        sink.log_metrics(train_point(step), step)
        sink.log_metrics(val_point(step), step)
    a_painter.close()  # killed: what it was handed is never drawn by it
    sink.close()
    assert drawn(path) == {"train/loss": 2, "train/lr": 2, "val/loss": 2, "val/accuracy": 2}


def test_dltrain_leaves_matplotlib_to_its_painter_and_no_process_behind(tmp_path):
    """`dltrain trainer=smoke` in a fresh process: curves.png drawn, matplotlib never imported
    by the command itself (its painter imported it), no child process left at the end."""
    if not painter._linux_with_cores():
        pytest.skip("a painter process needs Linux and two cores")
    run = tmp_path / "run"
    code = (
        "import json, multiprocessing, sys\n"
        "from dltrain.cli import main\n"
        "try:\n"
        f"    main(['data=moons', 'trainer=smoke', 'trainer.max_steps=4', 'hydra.run.dir={run}'])\n"
        "except SystemExit as end:\n"
        "    code = end.code\n"
        "print(json.dumps({'code': code, 'matplotlib': 'matplotlib' in sys.modules,\n"
        "                  'children': len(multiprocessing.active_children())}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "matplotlib": False, "children": 0}
    with Image.open(run / "curves.png") as image:
        assert json.loads(image.text["dltrain"])["train/loss"] >= 1


def members_pictures(tmp_path, n: int = 6) -> tuple[Pictures, list]:
    """n members' sinks watched by one Pictures, each fed points of its own."""
    pictures, expected = Pictures(), []
    for i in range(n):
        history = history_of(10 + 7 * i, spread=i % 2 == 0)
        sink = CurvesLogger(tmp_path / f"m{i}.png", "val/accuracy", f"member {i}",
                            at_validations=False, pictures=pictures)
        records: dict[int, dict[str, float]] = {}
        for tag, points in history.series.items():
            for step, value in points:
                records.setdefault(step, {})[tag] = value
        for step in sorted(records):
            sink.log_metrics(records[step], step)
        expected.append((tmp_path / f"m{i}.png", curves_png(history, "val/accuracy",
                                                            f"member {i}")))
    return pictures, expected


def test_pictures_drawn_together_are_each_runs_own(tmp_path, monkeypatch):
    """Six members' pictures, the second half drawn by a forked copy (on Linux with two
    cores, as CI has), each the picture of its own points; the same without the copy."""
    for forking in (True, False):
        if not forking:
            monkeypatch.setattr(painter, "_can_fork", lambda pictures: False)
        pictures, expected = members_pictures(tmp_path)
        for path, _ in expected:
            path.unlink(missing_ok=True)
        pictures.draw()
        for path, png in expected:
            assert path.read_bytes() == png


def test_a_failed_helper_leaves_no_picture_undrawn(tmp_path, monkeypatch):
    """The forked copy fails (draws nothing, exits 1): this process draws its share."""

    parent, draw_all = os.getpid(), painter._draw_all
    monkeypatch.setattr(painter, "_can_fork", lambda pictures: True)
    monkeypatch.setattr(painter, "_draw_all", lambda jobs, warn=False:
                        draw_all(jobs, warn) if os.getpid() == parent else False)
    pictures, expected = members_pictures(tmp_path)
    pictures.draw()
    for path, png in expected:
        assert path.read_bytes() == png

def test_a_hanging_helper_is_killed_and_its_share_drawn_here(tmp_path, monkeypatch):
    """The forked copy never ends: after the wait it is killed, and this process draws its
    share (a sweep's end is never held by a picture)."""

    parent, draw_all = os.getpid(), painter._draw_all

    def hang_in_the_copy(jobs, warn=False):
        if os.getpid() != parent:
            time.sleep(600)
        return draw_all(jobs, warn)

    monkeypatch.setattr(painter, "_can_fork", lambda pictures: True)
    monkeypatch.setattr(painter, "_draw_all", hang_in_the_copy)
    real_failed = painter._failed
    monkeypatch.setattr(painter, "_failed", lambda pid, timeout_s: real_failed(pid, 0.5))
    pictures, expected = members_pictures(tmp_path, n=4)
    started = time.monotonic()
    pictures.draw()
    assert time.monotonic() - started < 60
    for path, png in expected:
        assert path.read_bytes() == png
