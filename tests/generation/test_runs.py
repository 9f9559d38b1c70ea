"""task=generation end to end: the real command for a GAN and a diffusion model (trainer=smoke),
samples from `dltrain predict --samples`, exact resume with both optimisers, the scorer's fid
against real data, and bad configs refused in one sentence with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dltrain.config import validate
from dltrain.data import build_data
from dltrain.data.tasks import as_generation
from dltrain.errors import ConfigError
from dltrain.generation.features import feature_network
from dltrain.generation.fid import feature_stats, frechet_distance
from dltrain.run import run
from dltrain.training.checkpoint import load_checkpoint
from tests.conftest import run_cli
from tests.train.test_resume import StopAfterSteps

TINY_GLYPHS = ["data.n_train=600", "data.n_test=200", "trainer.fid_samples=64", "trainer.threads=1"]


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.e2e
def test_a_gan_trains_end_to_end_and_samples(tmp_path):
    run_dir = tmp_path / "gan"
    proc = run_cli("task=generation", "model=gan", "trainer=smoke", *TINY_GLYPHS,
                   "model.channels=[8,16]", "trainer.d_steps=2", f"trainer.fid_cache={tmp_path}",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    s = summary(run_dir)
    assert s["status"] == "completed" and s["task"] == "generation"
    assert s["best"]["metric"] == "val/fid"
    assert s["test"]["fid"] > 0 and 0 < s["test"]["feature_accuracy"] <= 1
    assert (run_dir / "samples.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert list((tmp_path / "features").glob("glyphs-*.pt"))  # trained once, kept
    proc = run_cli("predict", str(run_dir), "--samples", "10", "--out", "s.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    samples = np.load(tmp_path / "s.npz")["samples"]
    assert samples.shape == (10, 1, 28, 28) and np.isfinite(samples).all()


@pytest.mark.e2e
def test_a_conditional_diffusion_model_trains_end_to_end(tmp_path):
    run_dir = tmp_path / "ddpm"
    proc = run_cli("task=generation", "model=diffusion", "trainer=smoke", *TINY_GLYPHS,
                   "trainer.max_steps=6", "model.channels=[8,16]", "model.timesteps=50",
                   "model.sample_steps=3", "model.conditional=true", "model.schedule=cosine",
                   f"trainer.fid_cache={tmp_path}", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    test = summary(run_dir)["test"]
    assert test["fid"] > 0 and 0 <= test["class_accuracy"] <= 1
    assert {f"class_accuracy_{d}" for d in range(10)} <= set(test)
    assert (run_dir / "chain.png").is_file() and (run_dir / "samples.png").is_file()


@pytest.mark.parametrize("model", ["gan", "diffusion"])
def test_resume_is_exact_with_every_optimiser(make_cfg, tmp_path, model):
    """k steps, a stop, a resume and n − k steps equal n steps: weights, both optimisers'
    states and the test's fid, bit for bit."""
    own = ["model.timesteps=20", "model.sample_steps=4"] if model == "diffusion" else []
    cfg = make_cfg("task=generation", f"model={model}", "data=moons", "data.n_train=400",
                   "data.batch_size=50", "trainer.max_epochs=3", "trainer.log_every=5",
                   "trainer.d_steps=2", "trainer.fid_samples=100", "model.width=32",
                   "model.depth=1", *own, "trainer.deterministic=true", "logger=none",
                   f"trainer.fid_cache={tmp_path}")
    full = run(cfg, tmp_path / "full")
    assert full.status == "completed", full.summary.get("error")
    steps = full.summary["steps"]
    # the stop counts optimiser steps: a GAN's loop step takes d_steps + 1 of them
    per_step = 3 if model == "gan" else 1
    cut = run(cfg, tmp_path / "cut", stop=StopAfterSteps((steps // 2 + 3) * per_step))
    assert cut.status == "interrupted"
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["state"]
    assert state["step"] == steps // 2 + 3 and state["batch"] > 0
    second = run(cfg, tmp_path / "cut", resume=True)
    assert second.status == "completed" and second.summary["steps"] == steps
    a, b = (load_checkpoint(tmp_path / name / "checkpoints" / "last.pt")
            for name in ("full", "cut"))
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    assert second.summary["test"] == full.summary["test"]
    optimisers = [(a["optimizer"], b["optimizer"])]
    if model == "gan":
        assert set(a["optimizer"]["parts"]) == {"generator", "discriminator"}
        optimisers = [(a["optimizer"]["parts"][p], b["optimizer"]["parts"][p])
                      for p in ("generator", "discriminator")]
    for x, y in optimisers:
        for key, moments in x["state"].items():
            assert torch.equal(moments["exp_avg_sq"], y["state"][key]["exp_avg_sq"])


def test_fid_of_real_against_real_is_near_zero_and_of_noise_large(tmp_path):
    data = as_generation(build_data({"name": "glyphs", "n_train": 1500, "n_test": 1000,
                                     "val_fraction": 0.4, "noise": 0.2, "seed": 0,
                                     "batch_size": 64, "augment": None}))
    features = feature_network(data, tmp_path, torch.device("cpu"))
    test = feature_stats(features.of(data.test.x))
    same = frechet_distance(test, feature_stats(features.of(data.test.x)))
    held_out = frechet_distance(test, feature_stats(features.of(data.val.x)))
    noise = frechet_distance(test, feature_stats(features.of(torch.randn_like(data.val.x))))
    assert same == pytest.approx(0, abs=1e-6)
    assert held_out * 100 < noise  # held-out real data: near the floor; noise: far above it


@pytest.mark.parametrize(("overrides", "phrase"), [
    (["model=gan"], "model=gan learns to generate samples: add task=generation"),
    (["task=generation"], "task=generation needs a generative model"),
    (["task=generation", "model=diffusion", "loss=wgan_gp"], "loss=wgan_gp trains a GAN"),
    (["task=generation", "model=gan", "loss=mse"], "loss=mse does not train model=gan"),
    (["task=generation", "model=gan", "trainer.accumulate=2"], "trainer.accumulate=2"),
    (["task=generation", "model=gan", "optim=sgd"], "optim=sgd has no betas"),
    (["task=generation", "model=diffusion", "model.schedule=cosin"], "model.schedule=cosin"),
    (["task=generation", "model=gan", "trainer.d_steps=0"], "trainer.d_steps=0"),
])
def test_bad_generation_configs_are_one_sentence(make_cfg, overrides, phrase):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(*overrides))
    assert phrase in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).endswith((".", "?"))


@pytest.mark.e2e
def test_a_bad_generation_config_exits_2_in_one_sentence(tmp_path):
    proc = run_cli("task=generation", "model=gan", "optim=sgd", "trainer=smoke",
                   f"hydra.run.dir={tmp_path}/run", cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "optim=sgd has no betas" in proc.stderr and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_data_without_classes_is_refused_for_generation():
    sine = build_data({"name": "sine", "n_train": 50, "n_test": 20, "val_fraction": 0.2,
                       "noise": 0.1, "seed": 0, "periods": 1.0, "batch_size": 10,
                       "augment": None})
    with pytest.raises(ConfigError, match="task=generation needs labelled images"):
        as_generation(sine)
