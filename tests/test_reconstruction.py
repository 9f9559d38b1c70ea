"""task=reconstruction end to end, in-process: an autoencoder learns, a VAE logs its terms and
its pictures, and `dltrain eval` scores the run again with the same numbers."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dltrain.cli import evaluate
from dltrain.data import build_data
from dltrain.run import run


def test_autoencoder_reconstructs_moons_far_below_their_variance(make_cfg, tmp_path):
    # the two moons are a curve in the plane: a code of one number holds most of a point (6
    # epochs: the default schedule anneals the rate to zero, and 4 reached 0.16 of the variance)
    cfg = make_cfg("task=reconstruction", "data=moons", "model.latent=1", "data.noise=0.05",
                   "model.activation=tanh", "optim.lr=0.003", "trainer.max_epochs=6",
                   "trainer.device=cpu", "logger=none")
    result = run(cfg, tmp_path)
    assert result.status == "completed", result.summary.get("error")
    test = build_data(cfg.data).test.x
    variance = (test - test.mean(0)).square().mean().item()  # the best constant's MSE
    assert result.summary["task"] == "reconstruction"
    assert result.summary["test"]["mse"] < 0.15 * variance
    assert result.summary["best"]["metric"] == "val/loss"


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_vae_logs_both_terms_draws_its_pictures_and_evaluates_alike(make_cfg, tmp_path,
                                                                    model):
    cfg = make_cfg("task=reconstruction", f"model={model}", "model.latent=2",
                   "model.variational=true", "loss.beta=2", "data.n_train=600",
                   "data.n_test=200", "trainer=smoke", "trainer.max_steps=12",
                   "trainer.max_epochs=3", "trainer.log_every=4")
    result = run(cfg, tmp_path)
    assert result.status == "completed", result.summary.get("error")
    test = result.summary["test"]
    assert test["kl"] > 0 and test["recon"] > 0
    assert test["elbo"] == pytest.approx(-(test["recon"] + test["kl"]))
    assert test["loss"] == pytest.approx(test["recon"] + 2 * test["kl"], rel=1e-4)
    assert test["mse"] == pytest.approx(test["recon"] / 784, rel=1e-4)
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").open()]
    validations = [r for r in records if "val/kl" in r]  # 540 samples: 4 batches an epoch
    assert [r["step"] for r in validations] == [4, 8, 12]
    assert all(r["val/kl"] > 0 and "val/recon" in r for r in validations)
    events = EventAccumulator(str(tmp_path / "tb"), size_guidance={"images": 0})
    events.Reload()
    images = {tag: [e.step for e in events.Images(tag)] for tag in events.Tags()["images"]}
    steps = [r["step"] for r in validations]
    assert images == {f"probe/{name}": steps for name in
                      ("reconstructions", "latent", "prior_samples", "latent_grid")}
    assert "val/kl" in events.Tags()["scalars"] and "test/elbo" in events.Tags()["scalars"]
    # dltrain eval: the best weights scored again, the same sampled codes, the same numbers
    assert evaluate([str(tmp_path)]) == 0
    again = json.loads((tmp_path / "eval.json").read_text())
    assert again["task"] == "reconstruction"
    assert again["test"] == pytest.approx(test, rel=1e-5)


def test_a_family_without_an_autoencoder_is_refused_before_training(make_cfg, tmp_path):
    result = run(make_cfg("task=reconstruction", "model=resnet", "data.n_train=100",
                          "data.n_test=10"), tmp_path)
    assert result.exit_code == 2 and "model=resnet has no encoder–decoder form" in \
        result.summary["error"]
    assert not (tmp_path / "checkpoints").exists()
