"""The experiments' report sections: the numbers behind their figures (dltrain/experiments/)."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from dltrain.experiments import experiment_of
from dltrain.experiments.capacity import decompose
from dltrain.experiments.init_study import per_layer_ratio
from dltrain.experiments.readers import layer_profile, read_metrics
from dltrain.experiments.resnet_vs_plain import weight_layers
from dltrain.probes import tags
from dltrain.report import Job


def test_bias_squared_plus_variance_is_the_mean_squared_distance_to_the_truth():
    rng = np.random.default_rng(0)
    truth = np.sin(np.linspace(-3, 3, 50))
    predictions = truth + 0.3 + rng.normal(0.0, 0.2, size=(400, 50))  # shifted and scattered
    terms = decompose(predictions, truth, noise_std=0.5)
    assert terms["bias2"] == pytest.approx(0.09, rel=0.05)
    assert terms["variance"] == pytest.approx(0.04, rel=0.05)
    assert terms["noise"] == 0.25
    assert terms["bias2"] + terms["variance"] == pytest.approx(
        np.mean((predictions - truth) ** 2), rel=1e-12)
    assert terms["expected"] == pytest.approx(terms["bias2"] + terms["variance"] + 0.25)


def test_with_few_training_sets_the_terms_are_still_unbiased():
    """The mean of 4 fits still scatters by variance / 4: bias² must not count it."""
    rng = np.random.default_rng(1)
    truth = np.zeros(30)
    estimates = [decompose(0.1 + rng.normal(0.0, 1.0, size=(4, 30)), truth, 0.0)
                 for _ in range(2000)]
    assert np.mean([t["bias2"] for t in estimates]) == pytest.approx(0.01, abs=0.004)
    assert np.mean([t["variance"] for t in estimates]) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize("degree", [1, 3, 5])
def test_the_terms_add_up_to_the_error_measured_on_noisy_test_points(degree):
    """Polynomial least squares on many small training sets: bias² + variance + noise from a
    fixed grid predicts the test error on fresh noisy points of the same input distribution."""
    rng = np.random.default_rng(degree)
    noise = 0.3
    grid = np.linspace(-np.pi, np.pi, 400)
    test_x = rng.uniform(-np.pi, np.pi, 20_000)
    test_y = np.sin(test_x) + noise * rng.normal(size=test_x.shape)
    fits, errors = [], []
    for _ in range(300):
        x = rng.uniform(-np.pi, np.pi, 20)
        coefficients = np.polyfit(x, np.sin(x) + noise * rng.normal(size=20), degree)
        fits.append(np.polyval(coefficients, grid))
        errors.append(np.mean((np.polyval(coefficients, test_x) - test_y) ** 2))
    terms = decompose(np.stack(fits), np.sin(grid), noise)
    assert terms["expected"] == pytest.approx(np.mean(errors), rel=0.05)
    if degree == 1:
        assert terms["bias2"] > terms["variance"]  # a line: bias dominates
    if degree == 5:
        assert terms["variance"] > terms["bias2"]  # 6 coefficients from 20 points: variance


def test_layer_profile_reads_step_0_in_model_order_without_the_head(tmp_path):
    records = [
        {"step": 0, "probe/activations/hidden.0.act/mean": 0.1,
         "probe/activations/hidden.0.act/std": 1.0, "probe/activations/hidden.1.act/std": 0.5,
         "probe/activations/head/std": 3.0},
        {"step": 0, "probe/gradients/hidden.0.linear/norm": 2.0,
         "probe/gradients/total_norm": 9.0},
        {"step": 5, "probe/activations/hidden.0.act/std": 7.0},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    read = read_metrics(tmp_path)
    assert layer_profile(read, tags.ACTIVATIONS, "std") == [("hidden.0.act", 1.0),
                                                            ("hidden.1.act", 0.5)]
    assert layer_profile(read, tags.GRADIENTS, "norm") == [("hidden.0.linear", 2.0)]
    assert read_metrics(tmp_path / "nowhere") == []


def test_per_layer_ratio_is_the_geometric_mean_factor():
    assert per_layer_ratio([1.0, 0.5, 0.25, 0.125]) == pytest.approx(0.5)
    assert per_layer_ratio([2.0]) is None


def test_weight_layers_count_linear_layers_from_input_to_output():
    assert weight_layers({"model": {"name": "mlp", "depth": 20, "hidden": None}}) == 21
    assert weight_layers({"model": {"name": "mlp", "depth": 2, "hidden": [8, 8, 8]}}) == 4
    assert weight_layers({"model": {"name": "resnet", "depth": 10}}) == 22  # stem + 2x10 + head
    assert weight_layers({"model": {"name": "cnn"}}) is None


def test_a_sweep_is_an_experiment_when_every_job_ran_the_same_one():
    def job(**overrides) -> Job:
        return Job("0", {k: str(v) for k, v in overrides.items()})

    assert experiment_of([job(experiment="overfitting", x=1),
                          job(experiment="overfitting", x=2)]) == "overfitting"
    assert experiment_of([job(x=1), job(x=2)]) is None


def fake_sweep(root, experiment: str, widths, seeds, fit) -> None:
    """A sweep directory as Hydra and the fit probe leave it: overrides, config, summary and
    fit.npz of every job (fit(width, seed) -> the arrays of fit.npz)."""
    import yaml

    num = 0
    for width in widths:
        for seed in seeds:
            job = root / f"{num}_w{width}_s{seed}"
            (job / ".hydra").mkdir(parents=True)
            overrides = [f"experiment={experiment}", f"model.width={width}",
                         f"trainer.seed={seed}"]
            (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(
                {"model": {"name": "mlp", "width": width}, "trainer": {"seed": seed}}))
            (job / "summary.json").write_text(json.dumps({
                "status": "completed", "params": 3 * width + 1, "objective": 1.0,
                "best": {"metric": "val/loss", "mode": "min"}, "test": {"loss": 1.0}}))
            np.savez(job / "fit.npz", **fit(width, seed))
            num += 1


def test_the_bias_variance_section_from_the_runs_fit_files(tmp_path):
    from rich.console import Console

    from dltrain.sweep_report import write_sweep_report

    x = np.linspace(-1, 1, 11)
    truth = x**2
    offsets = {0: -0.1, 1: 0.0, 2: 0.1}  # three training sets, fits scattered around the truth

    def fit(width, seed):
        shift = 0.5 if width == 1 else 0.0  # the narrow model misses by 0.5 everywhere
        spread = 1.0 if width == 1 else 3.0
        pred = truth + shift + spread * offsets[seed]
        return {"x": x, "truth": truth, "pred": pred, "train_x": x[:5], "train_y": truth[:5],
                "train_pred": pred[:5], "train_mse": 0.0, "test_mse": 0.5 + width / 100,
                "noise": 0.2}

    fake_sweep(tmp_path, "bias_variance", [1, 8], [0, 1, 2], fit)
    write_sweep_report(tmp_path, Console(file=io.StringIO()))
    table = {int(r["capacity"]): r for r in csv.DictReader((tmp_path / "experiment.csv").open())}
    # variance: (0.1² + 0 + 0.1²) spread² / (3 - 1); bias²: the mean fit's miss², less the
    # variance / 3 that a mean of three fits still scatters by
    assert float(table[1]["variance"]) == pytest.approx(0.01)
    assert float(table[8]["variance"]) == pytest.approx(0.09)
    assert float(table[1]["bias2"]) == pytest.approx(0.25 - 0.01 / 3)
    assert float(table[8]["bias2"]) == pytest.approx(0.0 - 0.09 / 3)
    assert float(table[1]["noise"]) == pytest.approx(0.04)
    # the sum is the mean squared distance of the fits to the truth, plus the noise
    assert float(table[8]["expected"]) == pytest.approx((2 * 0.3**2) / 3 + 0.04)
    assert float(table[8]["measured_test_mse"]) == pytest.approx(0.58)
    report = (tmp_path / "report.md").read_text()
    assert "## Experiment: bias_variance" in report
    assert "model.width=1 (4 parameters, 3 training sets): bias² 0.2467, variance 0.01" in report
    assert "bias² ≈ 0 (estimate -0.03, within its noise)" in report
    assert (tmp_path / "plots" / "bias_variance_decomposition.png").is_file()
