"""Exact resume: k steps + interruption + resume equals n steps, bit for bit (DESIGN §4)."""

from __future__ import annotations

import json

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from dltrain.run import evaluate_run, run
from dltrain.training.checkpoint import load_checkpoint
from dltrain.training.signals import StopRequest

OVERRIDES = ["data=moons", "reg=[dropout]", "sched=cosine", "trainer.deterministic=true",
             "trainer.max_epochs=3", "logger=none", "trainer.log_every=10"]


class StopAfterSteps(StopRequest):
    """A stop request that arrives after `n` optimiser steps, as a SIGTERM would."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.steps = 0
        self.handle = register_optimizer_step_post_hook(self._count)
        self.n = n

    def _count(self, *_args) -> None:
        self.steps += 1
        if self.steps >= self.n:
            self.request("SIGTERM")
            self.handle.remove()


def assert_resumes_exactly(cfg, tmp_path, mid_epoch: bool = True) -> None:
    """A run stopped a few steps after its middle and resumed ends with the weights and test
    metrics of the same run never stopped, bit for bit (`mid_epoch`: the stop fell inside an
    epoch, which is what the data order must survive)."""
    full = run(cfg, tmp_path / "full")
    assert full.status == "completed", full.summary.get("error")
    steps = full.summary["steps"]
    first = run(cfg, tmp_path / "cut", stop=StopAfterSteps(steps // 2 + 3))
    assert first.status == "interrupted"
    state = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["state"]
    assert state["step"] == steps // 2 + 3
    if mid_epoch:
        assert state["batch"] > 0
    second = run(cfg, tmp_path / "cut", resume=True)
    assert second.status == "completed" and second.summary["steps"] == steps
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "cut" / "checkpoints" / "last.pt")["model"]
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert second.summary["test"] == full.summary["test"]


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_checkpoint(run_dir / "checkpoints" / "last.pt")["model"]


def summary(run_dir) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from dltrain.cli import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=OVERRIDES)
    run_dir = tmp_path_factory.mktemp("full")
    assert run(cfg, run_dir).status == "completed"
    return run_dir


def assert_same_run(a, b) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert summary(a)["test"] == summary(b)["test"]
    assert summary(a)["steps"] == summary(b)["steps"] == 84


def test_interrupted_mid_epoch_then_resumed_equals_uninterrupted(make_cfg, tmp_path,
                                                                 uninterrupted):
    cfg = make_cfg(*OVERRIDES)
    first = run(cfg, tmp_path, stop=StopAfterSteps(37))  # 28 steps an epoch: mid epoch 2
    assert first.status == "interrupted" and first.exit_code == 130
    state = load_checkpoint(tmp_path / "checkpoints" / "last.pt")["state"]
    assert (state["step"], state["epoch"], state["batch"]) == (37, 1, 9)
    assert summary(tmp_path)["status"] == "interrupted"

    second = run(cfg, tmp_path, resume=True)
    assert second.status == "completed" and second.exit_code == 0
    assert_same_run(tmp_path, uninterrupted)
    steps = [r["step"] for r in map(json.loads, (tmp_path / "metrics.jsonl").open())
             if "train/loss" in r]
    assert steps == sorted(steps) and 37 in steps and steps[-1] == 84  # one continuous record


def test_trainer_resume_auto_continues_a_resubmitted_command(make_cfg, tmp_path,
                                                             uninterrupted):
    cfg = make_cfg(*OVERRIDES, "trainer.resume=auto")
    assert run(cfg, tmp_path, stop=StopAfterSteps(50)).status == "interrupted"
    assert run(cfg, tmp_path).status == "completed"  # the same command, resubmitted
    assert_same_run(tmp_path, uninterrupted)
    before = (tmp_path / "summary.json").read_text()
    again = run(cfg, tmp_path)  # finished: nothing to do, nothing overwritten
    assert again.status == "completed" and again.exit_code == 0
    assert (tmp_path / "summary.json").read_text() == before


def test_a_finished_run_is_refused_unless_the_budget_is_raised(make_cfg, tmp_path):
    cfg = make_cfg("data=moons", "trainer.max_epochs=1", "logger=none")
    run(cfg, tmp_path)
    before = (tmp_path / "summary.json").read_text()
    refused = run(cfg, tmp_path, resume=True)
    assert refused.exit_code == 2 and "raise the budget" in refused.summary["error"]
    assert (tmp_path / "summary.json").read_text() == before  # the run's record is kept
    more = run(make_cfg("data=moons", "trainer.max_epochs=2", "logger=none"), tmp_path,
               resume=True)
    assert more.status == "completed" and more.summary["epochs"] == 2
    assert more.summary["steps"] == 56


def test_eval_reproduces_the_runs_test_metrics(make_cfg, tmp_path):
    cfg = make_cfg("data=moons", "trainer.max_epochs=2", "logger=none")
    result = run(cfg, tmp_path)
    evaluation = evaluate_run(cfg, tmp_path)
    assert evaluation["test"] == pytest.approx(result.summary["test"])
    assert evaluation["checkpoint"].endswith("best.pt")
    assert json.loads((tmp_path / "eval.json").read_text())["test"] == evaluation["test"]


def test_resume_with_other_data_is_refused(make_cfg, tmp_path):
    run(make_cfg("data=moons", "trainer=smoke", "logger=none"), tmp_path)
    result = run(make_cfg("data=circles", "trainer=smoke", "trainer.max_steps=40",
                          "logger=none"), tmp_path, resume=True)
    assert result.exit_code == 2 and "other data" in result.summary["error"]


def test_resume_with_another_model_is_refused_naming_what_changed(make_cfg, tmp_path):
    run(make_cfg("data=moons", "trainer=smoke", "logger=none"), tmp_path)
    result = run(make_cfg("data=moons", "trainer=smoke", "trainer.max_steps=40", "logger=none",
                          "model.hidden=[16]", "model.dropout=0.1"), tmp_path, resume=True)
    assert result.exit_code == 2
    assert result.summary["error"] == (
        "The checkpoint's weights do not fit the model this config builds (model.dropout=0.1 "
        "instead of the run's 0.0, model.hidden=[16] instead of the run's null); keep the "
        "run's model settings.")
