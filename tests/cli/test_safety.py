"""Never lose work, never trust input — through the real command (DESIGN §4)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

# 6000 glyphs: 42 steps an epoch of 128 (5400 after validation's 10%), 126 in all
RUN = ["data=glyphs", "data.n_train=6000", "trainer.max_epochs=3", "trainer.log_every=5",
       "reg=[dropout]", "sched=cosine", "trainer.deterministic=true", "trainer.device=cpu"]


def dltrain_command() -> list[str]:
    script = Path(sys.executable).parent / "dltrain"
    return [str(script)] if script.exists() else [sys.executable, "-m", "dltrain"]


def wait_for_step(metrics: Path, step: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be interrupted"
        if metrics.exists():
            for line in metrics.read_text().splitlines():
                if json.loads(line).get("step", 0) >= step:
                    return
        time.sleep(0.01)
    raise AssertionError("training did not reach the step in time")


def model_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["model"]


def test_sigterm_mid_epoch_then_resume_equals_the_uninterrupted_run(tmp_path):
    interrupted, whole = tmp_path / "interrupted", tmp_path / "whole"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([*dltrain_command(), *RUN, f"hydra.run.dir={interrupted}"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_for_step(interrupted / "metrics.jsonl", 30, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["status"] == "interrupted"
    assert "dltrain resume" in out + err  # the user is told how to go on

    resumed = run_cli("resume", str(interrupted), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert run_cli(*RUN, f"hydra.run.dir={whole}", cwd=tmp_path).returncode == 0

    a, b = model_weights(interrupted), model_weights(whole)
    assert all(torch.equal(a[k], b[k]) for k in b)
    test_a = json.loads((interrupted / "summary.json").read_text())["test"]
    test_b = json.loads((whole / "summary.json").read_text())["test"]
    assert test_a == test_b

    # one TensorBoard run, one step counter: no step logged twice after the resume
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(interrupted / "tb"))
    acc.Reload()
    steps = [e.step for e in acc.Scalars("train/loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 3 * 42

    evaluation = run_cli("eval", str(interrupted), cwd=tmp_path)
    assert evaluation.returncode == 0, evaluation.stderr
    assert json.loads((interrupted / "eval.json").read_text())["test"] == pytest.approx(test_a)


class Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_checkpoint_that_would_run_code_is_refused_by_eval_and_resume(tmp_path):
    run_dir = tmp_path / "run"
    assert run_cli("trainer=smoke", "data=moons", f"hydra.run.dir={run_dir}",
                   cwd=tmp_path).returncode == 0
    marker = tmp_path / "pwned"
    for name in ("last.pt", "best.pt"):
        torch.save({"format": 1, "model": Exploit(marker), "state": {}},
                   run_dir / "checkpoints" / name)
    for verb in ("eval", "resume"):
        proc = run_cli(verb, str(run_dir), "trainer.max_steps=40", cwd=tmp_path) \
            if verb == "resume" else run_cli(verb, str(run_dir), cwd=tmp_path)
        assert proc.returncode == 2, (verb, proc.stderr)
        assert "not a plain-data checkpoint" in proc.stderr and "Traceback" not in proc.stderr
    assert not marker.exists()


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.lrr=0.1", "did you mean optim.lr?"),
        ("model=cnnn", "there is no such option in group model"),
        ("optim.lr=-1", "optim.lr=-1 must be a number > 0"),
        ("data.val_fraction=1.5", "data.val_fraction=1.5 must be a number in (0, 1)"),
    ],
)
def test_config_errors_exit_2_with_one_sentence(tmp_path, override, expected):
    proc = run_cli(override, cwd=tmp_path)
    assert proc.returncode == 2
    assert expected in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "outputs").exists()


def test_a_sweep_with_a_diverging_job_finishes_the_others_and_exits_non_zero(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "data=moons", "optim=sgd", "optim.lr=1e12,0.05,0.01", "trainer=smoke",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 1
    statuses = sorted(json.loads(p.read_text())["status"] for p in sweep.glob("*/summary.json"))
    assert statuses == ["completed", "completed", "diverged"]
    assert "1 of 3 runs did not complete" in proc.stderr and "diverged" in proc.stderr


def test_divergence_exits_1_naming_the_step_and_the_layer(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("data=moons", "optim=sgd", "optim.lr=1e12", "trainer.log_every=1",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert "at step" in summary["error"] and "first non-finite" in summary["error"]
