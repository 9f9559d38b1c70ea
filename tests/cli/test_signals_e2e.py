"""Signals at every moment of the real `dltrain` command (issue 21).

DLTRAIN_FAULT=signal-at:POINT[:SIGNALS] makes the command send itself the signals at a named
point (dltrain.training.signals.signal_at): deterministic, no sleeping. Whatever the moment,
the exit code and summary.json agree, and no traceback is printed.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

SMOKE = ("trainer=smoke", "logger=none")


def dltrain(tmp_path, fault: str, *args: str):
    return run_cli(*args, cwd=tmp_path, env={"DLTRAIN_FAULT": f"signal-at:{fault}"})


@pytest.mark.parametrize("fault", ["start", "start:SIGINT", "preflight:SIGINT",
                                   "preflight:SIGTERM"])
def test_a_signal_before_the_run_exits_130_in_one_line(tmp_path, fault):
    """While Python imports, Hydra composes and the preflight checks: no run directory yet."""
    proc = dltrain(tmp_path, fault, *SMOKE, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 130, proc.stderr
    signal = fault.partition(":")[2] or "SIGTERM"
    assert proc.stderr.strip().splitlines()[-1] == f"dltrain: interrupted by {signal}"
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "run" / "summary.json").exists()


@pytest.mark.parametrize("fault", ["task", "task:SIGINT+SIGINT"])
def test_a_signal_once_the_run_directory_exists_writes_an_interrupted_summary(tmp_path, fault):
    """Hydra's job has made the run directory, the run has not begun: even a second Ctrl-C
    then leaves a summary (the run stops before it loads anything)."""
    run_dir = tmp_path / "run"
    proc = dltrain(tmp_path, fault, *SMOKE, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 130, proc.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "interrupted"
    assert not (run_dir / "checkpoints" / "last.pt").exists()
    assert "Traceback" not in proc.stderr + proc.stdout


def test_two_ctrl_c_after_the_summary_is_written_keep_its_exit_code(tmp_path):
    """The handlers stay until the command exits: nothing can turn a completed run's exit
    code into 130 (or 143) any more. (A single SIGTERM there: the sweep's test below.)"""
    run_dir = tmp_path / "run"
    proc = dltrain(tmp_path, "ended:SIGINT+SIGINT", *SMOKE, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "completed"
    assert "Traceback" not in proc.stderr + proc.stdout


def test_a_signal_as_a_sweeps_job_ends_stops_the_sweep_at_the_next_job(tmp_path):
    """The first job completes (the signal came after its summary); the next one reads the
    request first thing and stops, interrupted, and the sweep exits 130."""
    sweep = tmp_path / "sweep"
    proc = dltrain(tmp_path, "ended", "-m", "optim.lr=0.001,0.01", *SMOKE,
                   f"hydra.sweep.dir={sweep}", "hydra.sweep.subdir=${hydra.job.num}")
    assert proc.returncode == 130, proc.stderr
    statuses = [json.loads((sweep / job / "summary.json").read_text())["status"]
                for job in ("0", "1")]
    assert statuses == ["completed", "interrupted"]
    assert not (sweep / "1" / "checkpoints" / "last.pt").exists()
    assert "Traceback" not in proc.stderr + proc.stdout
