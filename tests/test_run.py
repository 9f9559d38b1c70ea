"""run(cfg, run_dir) end to end in-process: the run directory, the summary, the results."""

import json

import pytest
import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

from dltrain.data.batches import train_batches
from dltrain.errors import ConfigError
from dltrain.log import NullLogger
from dltrain.run import build_job, run
from dltrain.training.checkpoint import load_checkpoint
from dltrain.training.distributed import Dist
from dltrain.training.loop import fit
from dltrain.training.signals import StopRequest
from dltrain.training.state import TrainState

SUMMARY_KEYS = {"status", "task", "epochs", "steps", "params", "device", "wall_s",
                "samples_per_s", "best", "val", "test", "objective", "env"}


def test_moons_reaches_90_percent_and_writes_the_run_directory(make_cfg, tmp_path):
    result = run(make_cfg("data=moons", "logger=none"), tmp_path)
    assert result.status == "completed" and result.exit_code == 0, result.summary.get("error")
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary) >= SUMMARY_KEYS
    assert summary["test"]["accuracy"] >= 0.9
    assert summary["task"] == "classification" and summary["device"] == "cpu"
    assert summary["best"]["metric"] == "val/accuracy" and summary["best"]["mode"] == "max"
    assert summary["objective"] == summary["best"]["value"] == summary["val"]["accuracy"]
    assert summary["params"] == 2 * 256 + 256 + 256 * 256 + 256 + 256 * 2 + 2
    assert {"python", "torch", "cuda", "git"} <= set(summary["env"])
    assert (tmp_path / ".hydra" / "config.yaml").exists()
    assert not (tmp_path / "tb").exists()  # logger=none
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == summary["steps"] and "test/accuracy" in records[-1]
    assert any("val/accuracy" in r for r in records) and any("train/loss" in r for r in records)


def test_sine_fits_below_mse_0_05(make_cfg, tmp_path):
    result = run(make_cfg("data=sine", "data.noise=0.1", "logger=none"), tmp_path)
    assert result.summary["test"]["mse"] < 0.05
    assert result.summary["best"] == {"metric": "val/loss", "mode": "min",
                                      "value": result.objective,
                                      "step": result.summary["best"]["step"]}


def test_checkpoints_hold_what_a_resume_needs(make_cfg, tmp_path):
    cfg = make_cfg("data=moons", "trainer=smoke", "sched=cosine", "logger=none")
    run(cfg, tmp_path)
    last = load_checkpoint(tmp_path / "checkpoints" / "last.pt")
    assert set(last) >= {"model", "optimizer", "scheduler", "state", "rng", "config", "spec",
                         "norm"}
    assert last["state"]["step"] == 20 and last["spec"]["task"] == "classification"
    assert last["config"]["optim"]["lr"] == cfg.optim.lr
    best = load_checkpoint(tmp_path / "checkpoints" / "best.pt")
    assert set(best["model"]) == set(last["model"])


def test_the_test_metrics_come_from_the_best_weights(make_cfg, tmp_path):
    from dltrain.data import build_data
    from dltrain.losses import MetricTotals, build_loss
    from dltrain.models import build_model

    cfg = make_cfg("data=moons", "trainer.max_epochs=3", "logger=none")
    result = run(cfg, tmp_path)
    data = build_data(cfg.data)
    model = build_model(cfg.model, cfg.init, data.spec)
    model.load_state_dict(load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"])
    model.eval()
    totals = MetricTotals("classification")
    with torch.no_grad():
        out = model(data.test.x)
        totals.update(out, data.test.y, build_loss(cfg.loss, data.spec)(out, data.test.y))
    assert result.summary["test"]["accuracy"] == pytest.approx(totals.compute()["accuracy"])


def test_a_bad_input_fails_with_exit_code_2_and_a_summary(make_cfg, tmp_path):
    result = run(make_cfg("data=moons", "data.n_train=3", "data.val_fraction=0.1"), tmp_path)
    assert result.exit_code == 2 and result.status == "failed"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] == "failed" and "val_fraction" in summary["error"]


def test_a_config_torch_refuses_is_a_bad_input_before_training(make_cfg, tmp_path):
    # one-cycle cycles a momentum that L-BFGS does not have: OneCycleLR raises ValueError
    result = run(make_cfg("data=moons", "optim=lbfgs", "sched=onecycle", "logger=none"),
                 tmp_path)
    assert result.exit_code == 2 and result.status == "failed"
    assert result.summary.get("steps", 0) == 0  # refused while the job was built
    assert result.summary["error"] == (
        "sched=onecycle refuses its config: optimizer must support momentum or beta1 with "
        "`cycle_momentum` option enabled.")
    assert run(make_cfg("data=moons", "optim=lbfgs", "sched=onecycle", "logger=none",
                        "sched.cycle_momentum=false", "trainer=smoke"),
               tmp_path / "off").status == "completed"
    # our own classes' refusals keep their own words
    own = run(make_cfg("model=transformer", "model.heads=3", "logger=none"), tmp_path / "own")
    assert own.exit_code == 2 and own.summary["error"].startswith("model.width=64 does not split")


def test_same_seed_same_result(make_cfg, tmp_path):
    cfg = make_cfg("data=moons", "trainer=smoke", "logger=none")
    a = run(cfg, tmp_path / "a").summary
    b = run(cfg, tmp_path / "b").summary
    assert a["test"] == b["test"]
    c = run(make_cfg("data=moons", "trainer=smoke", "logger=none", "trainer.seed=1"),
            tmp_path / "c").summary
    assert c["test"] != a["test"]


@pytest.fixture
def one_process_group(tmp_path):
    """A process group of one holds the DDP wrapper; a job given Dist(rank, 2) believes it
    is one of two."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    yield
    dist.destroy_process_group()


def test_a_data_parallel_job_trains_on_its_shard_of_every_batch(make_cfg, one_process_group):
    cfg = make_cfg("data=moons", "trainer=ddp", "data.batch_size=32")
    job = build_job(cfg, torch.device("cpu"), d=Dist(rank=1, world=2))
    whole = train_batches(job.data, 32, int(cfg.trainer.seed))
    (xs, ys), (x, y) = next(job.batches.epoch(1)), next(whole.epoch(1))
    assert len(ys) == 16 and torch.equal(ys, y[1::2]) and torch.equal(xs, x[1::2])


@pytest.mark.parametrize(("accumulate", "exchanges"), [(1, 4), (2, 4), (4, 4)])
def test_ddp_exchanges_gradients_once_a_step_whatever_it_accumulates(
        make_cfg, one_process_group, accumulate, exchanges):
    cfg = make_cfg("data=moons", "trainer=ddp", "trainer.max_steps=4",
                   f"trainer.accumulate={accumulate}", "logger=none")
    d = Dist(rank=0, world=2)
    job = build_job(cfg, torch.device("cpu"), d=d)
    seen = []

    def counting(state, bucket):
        seen.append(bucket.index())
        return default_hooks.allreduce_hook(state, bucket)

    job.parts.forward.register_comm_hook(None, counting)
    fit(job, TrainState(), NullLogger(), lambda *_: None, StopRequest(), d)
    assert len(seen) == exchanges  # one bucket (a small MLP), once for each of the 4 steps


def sync_norms(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.SyncBatchNorm) for m in model.modules())


def test_batch_norm_under_ddp_on_cpu_normalises_each_share_and_says_so(
        make_cfg, one_process_group, caplog):
    cpu, two = torch.device("cpu"), Dist(rank=0, world=2)
    with caplog.at_level("INFO", logger="dltrain"):
        job = build_job(make_cfg("data=moons", "trainer=ddp", "reg=[batchnorm]"), cpu, d=two)
    assert sync_norms(job.parts.model) == 0  # SyncBatchNorm runs on GPUs only
    assert "each process normalises its own 1/2 of the batch" in caplog.text
    with pytest.raises(ConfigError, match=r"trainer\.sync_batchnorm=true needs GPUs"):
        build_job(make_cfg("data=moons", "trainer=ddp", "reg=[batchnorm]",
                           "trainer.sync_batchnorm=true"), cpu, d=two)
    # one process, or no batch norm: nothing to synchronise, whatever the setting
    alone = build_job(make_cfg("data=moons", "reg=[batchnorm]", "trainer.sync_batchnorm=true"),
                      cpu)
    assert sync_norms(alone.parts.model) == 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batch_norm_under_ddp_on_gpus_normalises_the_whole_batch(make_cfg, tmp_path):
    dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0,
                            world_size=1)
    try:
        job = build_job(make_cfg("model=resnet", "trainer=ddp", "trainer.device=cuda"),
                        torch.device("cuda", 0), d=Dist(rank=0, world=2))
        assert sync_norms(job.parts.model) > 0
        # the optimiser steps the converted model's own parameters
        stepped = {id(p) for g in job.parts.optimizer.param_groups for p in g["params"]}
        assert stepped == {id(p) for p in job.parts.model.parameters()}
        x, y = next(job.batches.epoch(0))
        job.parts.loss(job.parts.forward(x), y).backward()
    finally:
        dist.destroy_process_group()
