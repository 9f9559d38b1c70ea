"""Data-parallel training with torchrun on CPU (gloo): two processes, one run directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from dltrain.run import run
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

RUN = ["data=moons", "trainer.max_epochs=2", "trainer.log_every=10", "sched=none"]


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "-m", "dltrain", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("single")
    proc = run_cli(*RUN, f"hydra.run.dir={cwd / 'run'}", cwd=cwd)
    assert proc.returncode == 0, proc.stderr
    return cwd / "run"


def test_two_processes_write_one_run_directory_and_match_one_process(tmp_path, single):
    # with probes on: rank 0 alone probes, without collectives, and changes nothing
    probes = ["probe=[activations,gradients,landscape]", "probe.every=20",
              "probe.landscape.resolution=3", "probe.landscape.points=3"]
    proc = torchrun("trainer=ddp", *RUN, *probes, f"hydra.run.dir={tmp_path / 'run'}",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no directory of another rank
    run_dir = tmp_path / "run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert summary["replicas_in_sync"] is True  # both ranks ended with the same weights
    # rank 0 alone writes: one event file, every logged step once
    assert len(list((run_dir / "tb").iterdir())) == 1
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()
             if "train/loss" in line]
    assert steps == sorted(set(steps))
    probed = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").open()
              if "probe/activations/" in line]
    assert probed == [0, 20, 40]  # moons, 2 epochs of 28 steps: once each, by rank 0
    assert (run_dir / "landscape.npz").is_file() and (run_dir / "checkpoints/init.pt").is_file()
    # same global batch, same dynamics: the weights of one process, up to rounding
    a, b = weights(run_dir), weights(single)
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in b)
    reference = json.loads((single / "summary.json").read_text())["test"]
    assert summary["test"]["accuracy"] == pytest.approx(reference["accuracy"], abs=0.01)


# A batch that does not split over the ranks: tests/data/test_shards.py (the sentence), and
# test_torchrun_without_trainer_ddp_is_refused (a refusal under torchrun reaches the user).


def test_torchrun_without_trainer_ddp_is_refused(tmp_path):
    proc = torchrun("data=moons", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode != 0 and "add trainer=ddp" in proc.stderr


def test_each_process_draws_its_own_dropout_and_resumes_it(tmp_path):
    """Resume under DDP: a run of 1 epoch resumed to 2 ends with the weights of a run of 2.
    With dropout: the processes' shares of a batch need masks of their own, and a resume gives
    each its stream back."""
    drop = ["trainer=ddp", "data=moons", "model.dropout=0.3", "trainer.log_every=10",
            "sched=none"]  # the budget is raised on resume: a constant rate is the same run
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    for args in ([*drop, "trainer.max_epochs=2", f"hydra.run.dir={whole}"],
                 [*drop, "trainer.max_epochs=1", f"hydra.run.dir={cut}"],
                 ["resume", str(cut), "trainer.max_epochs=2"]):
        proc = torchrun(*args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["steps"] == 56 and summary["world_size"] == 2
    ranks = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)["rng_ranks"]
    assert len(ranks) == 2 and not torch.equal(ranks[0]["torch"], ranks[1]["torch"])
    a, b = weights(whole), weights(cut)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_lbfgs_line_searches_in_step_across_processes(tmp_path, make_cfg):
    # each process's line search sees the global batch's loss: the same decisions everywhere
    # (on its own shard's loss they diverged and gloo aborted on mismatched exchanges)
    lbfgs = ["data=moons", "optim=lbfgs", "trainer.max_epochs=2", "logger=none"]
    proc = torchrun("trainer=ddp", *lbfgs, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["replicas_in_sync"] is True
    alone = run(make_cfg(*lbfgs), tmp_path / "alone").summary
    # the same search up to float rounding, which L-BFGS's 20 inner steps amplify a little
    assert summary["test"]["accuracy"] == pytest.approx(alone["test"]["accuracy"], abs=0.01)
    assert summary["test"]["loss"] == pytest.approx(alone["test"]["loss"], rel=0.05)


def test_a_recurrent_net_trains_data_parallel(tmp_path):
    """model=rnn under torchrun: nn.LSTM's flattened weights under DDP, the replicas equal at
    the end."""
    proc = torchrun("trainer=ddp", "data=adding", "data.length=10", "data.n_train=512",
                    "model=rnn", "model.hidden_size=8", "trainer.max_epochs=1",
                    "trainer.device=cpu", "logger=[]", f"hydra.run.dir={tmp_path / 'run'}",
                    cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["world_size"] == 2
    assert summary["replicas_in_sync"] is True
