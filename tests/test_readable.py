"""Pictures and lines that read right: the init study's legend (line styles, outside the data,
curves that coincide kept apart), categorical axes as points, the boundary's legend of the
classes, the progress line of a run shorter than its epochs, and the rule for `name`."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.colors import to_rgba
from omegaconf import OmegaConf

from dltrain.config import validate
from dltrain.errors import ConfigError
from dltrain.experiments.figures import line_styles
from dltrain.experiments.init_study import depth_figure
from dltrain.experiments.section import run_label
from dltrain.log.console import epochs_text, validation_line
from dltrain.probes.plots import boundary_figure
from dltrain.report.aggregate import Report, Row, Stat
from dltrain.report.plots import objective_figure
from dltrain.sweep import named_part


class FakeRun:
    def __init__(self, **values: str) -> None:
        self.values = values

    def value(self, key: str) -> str:
        return self.values[key]


KEYS = ["model.activation", "init"]
RUNS = [FakeRun(**{"model.activation": a, "init": i}) for a in ("identity", "tanh")
        for i in ("normal", "default", "lecun", "xavier")]


def init_profiles() -> dict:
    """Std and gradient norm per layer; LeCun and Xavier equal, as on square layers."""
    factor = {"normal": 0.5, "default": 0.58, "lecun": 1.0, "xavier": 1.0}
    profiles = {}
    for run in RUNS:
        f = factor[run.value("init")] * (0.95 if run.value("model.activation") == "tanh" else 1)
        profile = [(f"l{k}", 0.8 * f ** k) for k in range(10)]
        profiles[run_label(run, KEYS)] = (profile, profile[::-1])
    return profiles


def test_the_depth_legend_draws_each_entry_in_its_curve_s_style_below_the_panels():
    fig = depth_figure(init_profiles(), line_styles(RUNS, KEYS))
    fig.canvas.draw()
    (legend,) = fig.legends
    curves = {line.get_label(): line for line in fig.axes[0].get_lines()}
    entries = dict(zip([t.get_text() for t in legend.get_texts()], legend.legend_handles,
                       strict=True))
    assert set(entries) == set(curves) and len(entries) == 8
    for label, handle in entries.items():
        line = curves[label]
        assert handle.get_linestyle() == line.get_linestyle()
        assert handle.get_marker() == line.get_marker()
        assert to_rgba(handle.get_color()) == to_rgba(line.get_color())
    # identity solid, tanh dashed: in the legend too, not every entry solid
    assert entries["model.activation=identity, init=lecun"].get_linestyle() == "-"
    assert entries["model.activation=tanh, init=lecun"].get_linestyle() == "--"
    assert legend.handlelength >= 4
    box = legend.get_window_extent()
    for ax in fig.axes:  # the legend is off the data: below every panel
        assert box.y1 <= ax.get_window_extent().y0
    # LeCun and Xavier give the same values: their markers differ and their points sit apart
    lecun, xavier = (curves[f"model.activation=identity, init={i}"] for i in ("lecun", "xavier"))
    np.testing.assert_allclose(lecun.get_ydata(), xavier.get_ydata())
    assert lecun.get_marker() != xavier.get_marker()
    assert np.all(np.abs(np.asarray(lecun.get_xdata()) - xavier.get_xdata()) >= 0.1)


def report_of(params: list[dict], values: list[float], keys: tuple[str, ...]) -> Report:
    rows = tuple(Row(p, (), Stat(v, None, 1), {}, None) for p, v in zip(params, values,
                                                                            strict=True))
    return Report(sweep_dir=None, jobs=(), keys=keys, seeds=(), fixed={}, rows=rows,
                  metric="val/accuracy", mode="max")


def test_a_categorical_key_is_drawn_as_points_and_a_numeric_one_as_lines():
    inits = ["xavier", "default", "normal", "lecun"]
    params = [{"init": i, "model.activation": a} for a in ("relu", "tanh") for i in inits]
    values = [0.9, 0.8, 0.5, 0.91, 0.85, 0.82, 0.4, 0.86]
    fig = objective_figure(report_of(params, values, ("model.activation", "init")), "init")
    (ax,) = fig.axes
    # errorbar's containers: the series, each with its data line
    assert [c.get_label() for c in ax.containers] == ["model.activation=relu",
                                                      "model.activation=tanh"]
    lines = [c.lines[0] for c in ax.containers]
    for line in lines:
        assert line.get_linestyle() == "None" and line.get_marker() == "o"  # no joining line
    assert [t.get_text() for t in ax.get_xticklabels()] == sorted(inits)
    relu, tanh = lines  # side by side within each category, never on top of each other
    assert np.all(np.asarray(tanh.get_xdata()) - relu.get_xdata() > 0.2)
    assert np.all(np.abs(np.asarray(relu.get_xdata()) - np.arange(4)) < 0.5)
    # the y values are the objectives of each category, in the axis' order
    relu_values = dict(zip(inits, values[:4], strict=True))
    np.testing.assert_allclose(np.asarray(relu.get_ydata(), float),
                               [relu_values[i] for i in sorted(inits)])

    numeric = objective_figure(report_of([{"optim.lr": lr} for lr in (0.1, 0.01, 0.001)],
                                         [0.9, 0.95, 0.8], ("optim.lr",)), "optim.lr")
    (container,) = numeric.axes[0].containers
    assert container.lines[0].get_marker() == "o"
    np.testing.assert_allclose(np.asarray(container.lines[0].get_xdata(), float),
                               [0.001, 0.01, 0.1])
    assert numeric.axes[0].get_xscale() == "log"
    series = objective_figure(report_of(
        [{"optim.lr": lr, "model.width": w} for w in (8, 16) for lr in (0.1, 0.01)],
        [0.9, 0.8, 0.7, 0.6], ("model.width", "optim.lr")), "optim.lr")
    # an ordered axis: each series joined by its line
    assert [c.lines[0].get_linestyle() for c in series.axes[0].containers] == ["-", "-"]


def test_the_boundary_picture_has_a_legend_of_the_classes():
    xs = ys = np.linspace(-1, 1, 5)
    regions = (np.add.outer(ys, xs) > 0).astype(int) + (np.add.outer(ys, xs) > 1)
    points = np.array([[0.5, 0.5], [-0.5, -0.5], [0.9, 0.9]])
    fig = boundary_figure(xs, ys, regions, points, np.array([1, 0, 2]), 3, "t",
                          names=("cat", "dog"))
    (ax,) = fig.axes
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["cat", "dog", "class 2"]
    assert [to_rgba(h.get_color())[:3] for h in legend.legend_handles] == \
        [to_rgba(f"C{i}")[:3] for i in range(3)]
    fig.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1  # beside, not on it


def test_a_run_cut_short_by_its_steps_says_steps_not_a_second_epoch():
    # smoke: 20 steps of a 28-step epoch, max_epochs=2
    line = validation_line({"epoch": 0.714, "val/loss": 0.5}, 20, {"train/loss": 0.6}, 2, 20)
    assert line.startswith("step 20/20 (0.714 epoch)  train/loss 0.6  val/loss 0.5")
    cut = validation_line({"epoch": 1.5, "val/loss": 0.5}, 42, {}, 5, 42)
    assert cut.startswith("step 42/42 (1.5 epochs)")
    whole = validation_line({"epoch": 3.0, "val/loss": 0.5}, 84, {}, 10, 280)
    assert whole.startswith("epoch 3/10  step 84")  # the epochs end this run
    assert validation_line({"val/loss": 0.5}, 7, {}, None, None).startswith("step 7  ")
    assert epochs_text({"epochs": 0, "steps": 20}) == "< 1"
    assert epochs_text({"epochs": 0, "steps": 0}) == "0"
    assert epochs_text({"epochs": 3, "steps": 84}) == "3"


@pytest.mark.parametrize("name", ["lr-study", "run_2", "Ölçüm.v2", "a=1+b@x", 2024, None])
def test_a_filesystem_safe_name_is_accepted(make_cfg, name):
    cfg = make_cfg()
    OmegaConf.update(cfg, "name", name)
    validate(cfg)


@pytest.mark.parametrize("name", ["a/b", "..", "-x", "has space", "a\\b", "x:y", "", "n" * 81,
                                  "_hidden", True])
def test_an_unsafe_name_is_refused_in_one_sentence(make_cfg, name):
    cfg = make_cfg()
    OmegaConf.update(cfg, "name", name)
    with pytest.raises(ConfigError) as err:
        validate(cfg)
    message = str(err.value)
    assert message.startswith("name=") and "must be null or a name of at most 80" in message
    assert "\n" not in message and message.endswith("like).")  # one sentence


def test_the_name_goes_into_directory_names_once():
    assert named_part(None) == "" and named_part("") == ""
    assert named_part("lr-study") == "lr-study_"
    assert named_part("a/b") == "a_b_"  # never a path, should a name get past the rule
