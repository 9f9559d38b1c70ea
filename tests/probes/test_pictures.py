"""Boundary, fit and samples: pictures and text over training, and the numbers behind them."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dltrain.probes.boundary import classify
from dltrain.probes.fit import predict
from dltrain.run import run
from tests.probes.helpers import events, last_weights, rebuilt, records, scalars_at

PNG = b"\x89PNG\r\n\x1a\n"


def test_boundary_images_step_through_training_and_match_the_model(make_cfg, tmp_path):
    cfg = make_cfg("data=moons", "model.width=16", "probe=[boundary]", "probe.every=8",
                   "probe.boundary.resolution=30", "trainer=smoke")
    assert run(cfg, tmp_path).status == "completed"
    images = events(tmp_path).Images("probe/boundary")
    assert [i.step for i in images] == [0, 8, 16, 20]  # step 0, every 8 steps, the end
    assert all(i.encoded_image_string[:8] == PNG for i in images)
    assert images[-1].encoded_image_string == (tmp_path / "boundary.png").read_bytes()
    result = np.load(tmp_path / "boundary.npz")
    data, model, _ = rebuilt(cfg, last_weights(tmp_path))
    mean, std = np.array(data.norm["mean"]), np.array(data.norm["std"])
    gx, gy = np.meshgrid(result["xs"], result["ys"])
    grid = torch.tensor((np.stack([gx.ravel(), gy.ravel()], 1) - mean) / std,
                        dtype=torch.float32)
    assert np.array_equal(result["regions"], classify(model, grid).numpy().reshape(30, 30))
    train_accuracy = (classify(model, data.train.x) == data.train.y).float().mean()
    assert float(result["train_accuracy"]) == pytest.approx(float(train_accuracy))
    # the points drawn are the training points, in the data's own coordinates
    assert np.allclose(result["points"], data.train.x[:1000].numpy() * std + mean, atol=1e-5)


def test_fit_saves_the_prediction_on_a_fixed_grid_with_the_truth(make_cfg, tmp_path):
    cfg = make_cfg("data=sine", "data.n_train=100", "model.width=16", "probe=[fit]",
                   "probe.fit.points=50", "trainer=smoke")
    assert run(cfg, tmp_path).status == "completed"
    result = np.load(tmp_path / "fit.npz")
    assert result["x"][0] == pytest.approx(-2 * np.pi) and result["x"][-1] == pytest.approx(
        2 * np.pi)
    assert np.allclose(result["truth"], np.sin(result["x"]))
    data, model, _ = rebuilt(cfg, last_weights(tmp_path))
    mean, std = data.norm["mean"][0], data.norm["std"][0]
    grid = torch.tensor((result["x"][:, None] - mean) / std, dtype=torch.float32)
    assert np.allclose(result["pred"], predict(model, grid).numpy()[:, 0], atol=1e-6)
    assert np.allclose(result["train_x"], data.train.x.numpy()[:, 0] * std + mean, atol=1e-5)
    train_mse = np.mean((result["train_pred"] - result["train_y"]) ** 2)
    assert float(result["train_mse"]) == pytest.approx(train_mse, rel=1e-5)
    test_mse = float(((predict(model, data.test.x) - data.test.y) ** 2).mean())
    assert float(result["test_mse"]) == pytest.approx(test_mse, rel=1e-5)
    assert float(result["noise"]) == 0.1
    steps = 2  # 90 training points in batches of 64: one step per epoch, two epochs
    logged = scalars_at(tmp_path, steps, "probe/fit/")
    assert logged["probe/fit/test_mse"] == pytest.approx(test_mse, rel=1e-5)
    images = events(tmp_path).Images("probe/fit")
    assert [i.step for i in images] == [0, steps]
    assert (tmp_path / "fit.png").read_bytes()[:8] == PNG


def test_samples_are_text_at_step_0_and_every_validation(make_cfg, tmp_path):
    text = tmp_path / "book.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 400)
    cfg = make_cfg("data=text", f"data.path={text}", "data.block_size=32", "model=transformer",
                   "model.width=32", "model.depth=1", "probe=[samples]",
                   "probe.samples.length=40", "probe.samples.prompt=10", "trainer=smoke",
                   "trainer.max_steps=null")
    assert run(cfg, tmp_path / "run").status == "completed"
    from dltrain.data import build_data
    from dltrain.data.text import decode

    data = build_data(cfg.data)
    prompt = decode(data.val.x[0, :10], data.spec.vocab)
    acc = events(tmp_path / "run")
    shown = acc.Tensors("probe/samples/text_summary")
    validations = [r["step"] for r in records(tmp_path / "run") if "val/loss" in r]
    assert len(validations) == 2  # trainer=smoke: two epochs
    assert [e.step for e in shown] == [0, *validations]
    written = (tmp_path / "run" / "samples.txt").read_text().split("--- step ")[1:]
    assert len(written) == 3
    for block in written:
        sample = block.split("\n", 1)[1].rstrip("\n")
        assert sample.startswith(prompt) and len(sample) == 10 + 40
        assert set(sample) <= set(data.spec.vocab)
    markdown = shown[-1].tensor_proto.string_val[0].decode()
    assert "the first 10 characters are the prompt" in markdown
