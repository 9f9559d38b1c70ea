"""The model families learn, in-process through run(cfg, run_dir), on data small enough for CI."""

import json

import pytest
import torch

from dltrain.run import run


@pytest.fixture(autouse=True)
def one_thread():
    """Models this small train as fast on one thread, and do not fight over shared cores
    (run() sets the thread count for the whole process, so it is restored afterwards)."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make(make_cfg, *overrides: str):
    return make_cfg(*overrides, "logger=none", "trainer.threads=1")


# 2700 training glyphs, 6 epochs of batches of 64: a few seconds each
SMALL_GLYPHS = ("data.n_train=3000", "data.n_test=1000", "data.batch_size=64",
                "trainer.max_epochs=6")


def test_cnn_beats_mlp_on_glyphs(make_cfg, tmp_path):
    mlp = run(make(make_cfg, "model=mlp", *SMALL_GLYPHS), tmp_path / "mlp").summary
    cnn = run(make(make_cfg, "model=cnn", *SMALL_GLYPHS), tmp_path / "cnn").summary
    assert mlp["status"] == cnn["status"] == "completed"
    # measured: mlp 0.73, cnn 0.87 — the convolution's translation equivariance at work
    assert cnn["test"]["accuracy"] >= 0.8
    assert cnn["test"]["accuracy"] >= mlp["test"]["accuracy"] + 0.05
    assert cnn["params"] < mlp["params"] / 5  # with a fraction of the parameters


@pytest.mark.parametrize("model", ["resnet", "transformer"])
def test_resnet_and_transformer_learn_moons(make_cfg, tmp_path, model):
    result = run(make(make_cfg, "data=moons", f"model={model}"), tmp_path)
    assert result.status == "completed"
    assert result.summary["test"]["accuracy"] >= 0.9  # measured: resnet 0.97, transformer 0.97


def test_deep_plain_net_stalls_where_a_resnet_of_the_same_depth_learns(make_cfg, tmp_path):
    # 20 sigmoid layers: the gradient vanishes on the way down a plain stack, while the skip
    # connections of 10 residual blocks (20 weight layers) carry it to the first layer
    common = ("data=moons", "model.activation=sigmoid")
    plain = run(make(make_cfg, "model=mlp", "model.depth=20", "model.width=64", *common),
                tmp_path / "plain").summary
    residual = run(make(make_cfg, "model=resnet", "model.depth=10", *common),
                   tmp_path / "resnet").summary
    assert plain["test"]["accuracy"] < 0.7  # measured: 0.5, chance
    assert residual["test"]["accuracy"] >= 0.9  # measured: 0.95


def test_a_cnn_on_points_is_refused_before_training(make_cfg, tmp_path):
    result = run(make(make_cfg, "data=moons", "model=cnn"), tmp_path)
    assert result.exit_code == 2 and result.status == "failed"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["error"] == ("model=cnn needs images or signals, but data=moons gives 2-D "
                                "points; use model=mlp or model=resnet.")
    assert not (tmp_path / "checkpoints").exists() and "params" not in summary
