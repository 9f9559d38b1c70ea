"""run() end to end on small fake MNIST files in the exact IDX format (glyph digits inside)."""

import json

import pytest

from dltrain.run import run
from dltrain.training.checkpoint import load_checkpoint
from tests.data.files import fake_mnist


@pytest.fixture(scope="module")
def mnist_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    fake_mnist(root / "MNIST" / "raw", n_train=3000, n_test=600, gz=True)
    return root


def train(make_cfg, root, run_dir, *overrides):
    cfg = make_cfg("data=mnist", f"data.root={root}", "model=mlp", "data.batch_size=32",
                   "trainer.max_epochs=5", "trainer.device=cpu", "logger=none", *overrides)
    return run(cfg, run_dir)


def test_an_mlp_learns_idx_digits_and_the_run_keeps_the_normalisation(make_cfg, mnist_root,
                                                                      tmp_path):
    result = train(make_cfg, mnist_root, tmp_path)
    assert result.status == "completed", result.summary.get("error")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["task"] == "classification"
    # 2,700 training digits, 420 steps: about 0.8 (an MLP overfits this few; chance is 0.1)
    assert summary["test"]["accuracy"] > 0.7
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert best["spec"]["name"] == "mnist" and best["spec"]["input_shape"] == [1, 28, 28]
    assert len(best["norm"]["mean"]) == 1 and 0.05 < best["norm"]["mean"][0] < 0.5


def test_streaming_from_the_host_trains_the_same_model(make_cfg, mnist_root, tmp_path):
    memory = train(make_cfg, mnist_root, tmp_path / "a", "trainer.max_epochs=1")
    streamed = train(make_cfg, mnist_root, tmp_path / "b", "trainer.max_epochs=1",
                     "data.in_memory=false", "data.workers=0")
    assert streamed.status == "completed", streamed.summary.get("error")
    assert streamed.summary["steps"] == memory.summary["steps"]
    # the same batches in the same order: the same model, up to float rounding
    assert streamed.summary["test"]["loss"] == pytest.approx(memory.summary["test"]["loss"],
                                                             rel=1e-3)


def test_augmented_training_runs_and_still_learns(make_cfg, mnist_root, tmp_path):
    result = train(make_cfg, mnist_root, tmp_path, "reg=[augment]")
    assert result.status == "completed", result.summary.get("error")
    assert result.summary["test"]["accuracy"] > 0.6
