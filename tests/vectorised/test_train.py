"""A member of a stack ends as its run alone ends: the same weights, metrics, checkpoints and
files, to float rounding; and it continues as a run does after an interruption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dltrain.run import evaluate_run, run
from dltrain.training.checkpoint import load_checkpoint
from dltrain.training.signals import StopRequest
from dltrain.vectorised.model import Unstackable
from dltrain.vectorised.train import train_stack

SMALL = ("data=moons", "data.n_train=300", "data.n_test=200", "trainer.device=cpu",
         "trainer.log_every=3")
MLP = "model.hidden=[8,8]"

# Stacks that between them vary every stackable value and use every optimiser kind,
# dropout, batch norm, penalties, schedules (per step and on validation), clipping and early
# stopping.
CASES = {
    "momentum": (
        (MLP, "optim=momentum", "reg=[dropout,l2]", "sched=cosine", "trainer.max_epochs=3"),
        ["trainer.seed=0 optim.lr=0.05 model.dropout=0.0",
         "trainer.seed=1 optim.momentum=0.5 model.dropout=0.3 penalty.l2=0 data.noise=0.3",
         "trainer.seed=2 optim.weight_decay=0.01 penalty.l1=0.001 data.seed=3"]),
    "batchnorm": (  # running statistics, stacked like the parameters
        ("model=resnet", "model.width=8", "model.depth=1", "model.dropout=0.1", "optim=adam",
         "sched=onecycle", "trainer.max_epochs=2"),
        ["trainer.seed=0", "trainer.seed=1 optim.lr=0.01 model.dropout=0.0"]),
    "adamw": (
        (MLP, "optim=adamw", "init=normal", "sched=plateau", "trainer.grad_clip.max_norm=0.5",
         "reg=[early_stopping]", "trainer.early_stopping.patience=1", "trainer.max_epochs=6"),
        ["trainer.seed=0 optim.lr=0.03",
         "trainer.seed=1 init.std=0.3 optim.betas=[0.8,0.99] optim.eps=1e-6",
         "trainer.seed=2 optim.weight_decay=0.0 optim.lr=0.003"]),
}


def close(a, b, path: str = "") -> None:
    """Nested checkpoints, summaries or metrics equal to float rounding (timings aside)."""
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        if a.is_floating_point():
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=path)
        else:
            assert torch.equal(a, b), path
    elif isinstance(a, dict):
        assert set(a) == set(b), (path, set(a) ^ set(b))
        for key in a:
            if key not in ("train_s", "samples_per_s", "time", "perf/samples_per_s"):
                close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5), path
    else:
        assert a == b, path


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def members_are_their_runs(cfgs, tmp_path: Path, validated: str = "epoch 1/") -> list:
    """Train `cfgs` as a stack and each alone; assert each member wrote what its run did
    (summary, checkpoints, metrics, config; `validated` in its log); return the stack's
    results."""
    stacked = train_stack(cfgs, [tmp_path / f"stack{i}" for i in range(len(cfgs))])
    for i, (cfg, member) in enumerate(zip(cfgs, stacked, strict=True)):
        alone = run(cfg, tmp_path / f"alone{i}")
        a, b = tmp_path / f"stack{i}", tmp_path / f"alone{i}"
        assert member.status == alone.status == "completed"
        summary = json.loads((a / "summary.json").read_text())
        assert summary.pop("vectorised") == {"members": len(cfgs), "member": i}
        timings = ("wall_s", "startup_s", "env")
        close({k: v for k, v in summary.items() if k not in timings},
              {k: v for k, v in alone.summary.items() if k not in timings})
        for name in ("last.pt", "best.pt"):  # weights, optimiser, schedule, random states
            close(load_checkpoint(a / "checkpoints" / name),
                  load_checkpoint(b / "checkpoints" / name))
        close(jsonl(a / "metrics.jsonl"), jsonl(b / "metrics.jsonl"))
        assert list((a / "tb").glob("events.out.tfevents.*"))
        assert (a / ".hydra" / "config.yaml").read_text() == \
            (b / ".hydra" / "config.yaml").read_text()
        assert validated in (a / "train.log").read_text()
    # `dltrain eval` of a member scores what its summary says
    assert evaluate_run(cfgs[0], tmp_path / "stack0")["test"] == pytest.approx(
        stacked[0].summary["test"], rel=1e-5)
    return stacked


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_member_ends_as_its_run_alone(make_cfg, tmp_path, case):
    shared, variants = CASES[case]
    members_are_their_runs([make_cfg(*SMALL, *shared, *v.split()) for v in variants], tmp_path)


def test_a_physics_informed_member_ends_as_its_run_alone(make_cfg, tmp_path):
    # members differ in seed (hence in their draws of points, redrawn every 4 steps),
    # learning rate, loss weights and penalty; enough steps that the step is traced
    shared = ("pde=heat1d", "optim=adam", "trainer.device=cpu", "model.width=16",
              "pde.points.domain=120", "pde.points.boundary=20", "pde.points.initial=20",
              "pde.resample_every=4", "pde.eval.x=16", "pde.eval.t=8",
              "trainer.max_epochs=24", "trainer.val_every=8", "trainer.log_every=4")
    variants = ["trainer.seed=0", "trainer.seed=1 optim.lr=0.003 pde.weights.initial=10",
                "trainer.seed=2 pde.weights.residual=0.5 penalty.l2=0.001"]
    stacked = members_are_their_runs([make_cfg(*shared, *v.split()) for v in variants],
                                     tmp_path, "epoch 8/24  step 8  train/loss")
    logged = jsonl(tmp_path / "stack1" / "metrics.jsonl")
    terms = [r for r in logged if "train/loss/initial" in r]
    assert [r["step"] for r in terms] == [4, 8, 12, 16, 20, 24]
    assert all(r["train/loss/residual"] > 0 for r in terms)
    assert stacked[0].summary["pde"]["equation"] == "heat1d"
    # the members learnt apart: different points and weights, different fields
    assert len({r.summary["val"]["rel_l2"] for r in stacked}) == 3


class StopAfter(StopRequest):
    """A stop request that arrives after `steps` reads (the loop reads it once per step)."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.left = steps

    @property  # type: ignore[override]
    def requested(self) -> bool:
        self.left -= 1
        return self.left < 0

    @requested.setter
    def requested(self, value: bool) -> None:
        pass


def stopped_members_resume_as_runs(cfgs, tmp_path: Path, stopped_at: tuple) -> None:
    """Stop a stack of `cfgs` after 5 reads of its stop request; each member's last.pt must
    stand at `stopped_at` (step, epoch, batch), and resumed it must end as its run alone."""
    results = train_stack(cfgs, [tmp_path / f"s{i}" for i in range(2)], stop=StopAfter(5))
    assert [r.status for r in results] == ["interrupted", "interrupted"]
    assert [r.exit_code for r in results] == [130, 130]
    for i, cfg in enumerate(cfgs):
        state = load_checkpoint(tmp_path / f"s{i}" / "checkpoints" / "last.pt")["state"]
        assert (state["step"], state["epoch"], state["batch"]) == stopped_at
        resumed = run(cfg, tmp_path / f"s{i}", resume=True)
        whole = run(cfg, tmp_path / f"whole{i}")
        assert resumed.status == "completed"
        close(load_checkpoint(tmp_path / f"s{i}" / "checkpoints" / "last.pt")["model"],
              load_checkpoint(tmp_path / f"whole{i}" / "checkpoints" / "last.pt")["model"])
        assert resumed.summary["test"] == pytest.approx(whole.summary["test"], rel=1e-5)


def test_an_interrupted_stack_resumes_member_by_member_as_runs_do(make_cfg, tmp_path):
    shared = (*SMALL, MLP, "optim=adam", "model.dropout=0.2", "trainer.max_epochs=3")
    cfgs = [make_cfg(*shared, f"trainer.seed={s}") for s in (0, 1)]
    # 4 steps an epoch (and a read at its end): stopped after the first step of the second
    stopped_members_resume_as_runs(cfgs, tmp_path, (5, 1, 1))


def test_an_interrupted_physics_informed_stack_resumes_as_runs_do(make_cfg, tmp_path):
    # points redrawn every 2 steps: a resumed member must step on its run's draws
    shared = ("pde=heat1d", "optim=adam", "trainer.device=cpu", "model.width=8",
              "pde.points.domain=60", "pde.points.boundary=10", "pde.points.initial=10",
              "pde.resample_every=2", "pde.eval.x=8", "pde.eval.t=4",
              "trainer.max_epochs=9", "trainer.val_every=3", "trainer.log_every=3")
    cfgs = [make_cfg(*shared, f"trainer.seed={s}") for s in (0, 1)]
    # one step an epoch, the request read after it and twice at the epoch's end: stopped
    # after step 2, between two validations
    stopped_members_resume_as_runs(cfgs, tmp_path, (2, 2, 0))


def test_a_diverging_member_stops_alone_and_the_others_train_on(make_cfg, tmp_path):
    cfgs = [make_cfg(*SMALL, MLP, "optim=sgd", "trainer.max_epochs=2", f"optim.lr={lr}")
            for lr in (0.1, 1e30)]
    stacked = train_stack(cfgs, [tmp_path / "ok", tmp_path / "bad"])
    alone = run(cfgs[1], tmp_path / "bad_alone")
    assert [r.status for r in stacked] == ["completed", "diverged"]
    assert stacked[1].summary["error"] == alone.summary["error"]
    assert stacked[1].summary["error"].startswith("The training loss became nan at step")
    assert "test" in stacked[0].summary and "test" not in stacked[1].summary


def test_jobs_that_cannot_stack_are_refused_before_anything_is_written(make_cfg, tmp_path):
    cfgs = [make_cfg("data=text", f"data.path={tmp_path / 'none.txt'}", f"trainer.seed={s}")
            for s in (0, 1)]
    with pytest.raises(Unstackable, match="building the stack failed"):
        train_stack(cfgs, [tmp_path / "a", tmp_path / "b"])
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_members_end_probe_sees_its_final_weights(make_cfg, tmp_path):
    # probe=[fit] without images looks once, at the end (bias_variance stacks its seeds so);
    # member 1 stops early, member 0 trains on to the last epoch
    shared = ("data=sine", "data.n_train=60", "data.n_test=50", "trainer.device=cpu",
              "model.hidden=[16]", "probe=[fit]", "probe.fit.images=false",
              "trainer.max_epochs=8", "trainer.log_every=2", "trainer.early_stopping.patience=1")
    cfgs = [make_cfg(*shared, "trainer.seed=0", "optim.lr=0.01"),
            make_cfg(*shared, "trainer.seed=1", "optim.lr=0.3")]
    stacked = train_stack(cfgs, [tmp_path / f"stack{i}" for i in range(2)])
    steps = []
    for i, cfg in enumerate(cfgs):
        alone = run(cfg, tmp_path / f"alone{i}")
        a, b = tmp_path / f"stack{i}", tmp_path / f"alone{i}"
        assert stacked[i].summary["steps"] == alone.summary["steps"]
        steps.append(alone.summary["steps"])
        with np.load(a / "fit.npz") as fa, np.load(b / "fit.npz") as fb:
            assert set(fa.files) == set(fb.files)
            for key in fb.files:
                np.testing.assert_allclose(fa[key], fb[key], rtol=1e-4, atol=1e-5)
        close(jsonl(a / "metrics.jsonl"), jsonl(b / "metrics.jsonl"))
    assert steps[1] < steps[0]  # the early stop happened, and its fit is of that moment
