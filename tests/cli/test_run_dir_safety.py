"""The run directory through the real command: never lost, never overwritten (issue 21).

A new run or sweep over an existing one, two processes on one directory, an empty or
unwritable output folder, and a resume of a run that left no checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import run_cli
from tests.test_run_lock import Holder

pytestmark = pytest.mark.e2e

SMOKE = ["trainer=smoke", "data=moons"]


def files(folder: Path) -> dict[str, bytes]:
    """Every file under a folder and its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def one_sentence(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    return proc.stderr.strip()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("finished")
    proc = run_cli(*SMOKE, f"hydra.run.dir={home / 'run'}", cwd=home)
    assert proc.returncode == 0, proc.stderr
    return home / "run"


@pytest.fixture
def done(finished, tmp_path) -> Path:
    """A copy of the finished run, for a test that may change it."""
    return Path(shutil.copytree(finished, tmp_path / "run"))


def test_a_new_run_into_a_run_directory_is_refused_before_hydra_writes_anything(done, tmp_path):
    before = files(done)
    proc = run_cli(*SMOKE, "optim.lr=0.5", f"hydra.run.dir={done}", cwd=tmp_path)
    assert one_sentence(proc) == (
        f"dltrain: {done} already holds a run (checkpoints/, tb/, metrics.jsonl, summary.json): "
        f"continue it with dltrain resume {done}, or write the new run to another directory.")
    assert files(done) == before  # .hydra/config.yaml and train.log too: Hydra never ran

    resubmitted = run_cli(*SMOKE, "trainer.resume=auto", f"hydra.run.dir={done}", cwd=tmp_path)
    assert resubmitted.returncode == 0, resubmitted.stderr  # SLURM's resubmission goes on
    assert "already finished" in resubmitted.stdout + resubmitted.stderr


def test_a_sweep_into_a_folder_whose_jobs_hold_runs_is_refused_whole(finished, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep / "0_optim.lr=0.1")
    before = files(sweep)
    proc = run_cli("-m", *SMOKE, "optim.lr=0.1,0.2", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert one_sentence(proc) == (
        f"dltrain: {sweep} already holds the runs of a sweep (0_optim.lr=0.1), whose configs a "
        "new sweep would overwrite: give it another hydra.sweep.dir, or continue those runs "
        "with trainer.resume=auto.")
    assert files(sweep) == before


def test_a_directory_held_by_another_process_is_refused_until_that_process_dies(done,
                                                                                  tmp_path):
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    before = files(done)
    holders = [Holder(fresh), Holder(done)]
    try:
        run = run_cli(*SMOKE, f"hydra.run.dir={fresh}", cwd=tmp_path)  # refused by the preflight
        assert one_sentence(run) == f"dltrain: {fresh} {holders[0].says}"
        assert sorted(p.name for p in fresh.iterdir()) == [".lock"]  # Hydra wrote nothing
        resumed = run_cli("resume", str(done), "trainer.max_steps=40", cwd=tmp_path)
        assert f"dltrain: {done} {holders[1].says}" in resumed.stderr  # refused by run()
        assert resumed.returncode == 2 and "Traceback" not in resumed.stderr
        assert {k: v for k, v in files(done).items() if k != ".lock"} == before
    finally:
        for holder in holders:
            holder.kill()  # SIGKILL: the lock file stays, the lock goes with the process
    assert (fresh / ".lock").exists()
    run = run_cli(*SMOKE, f"hydra.run.dir={fresh}", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert json.loads((fresh / "summary.json").read_text())["status"] == "completed"
    assert not (fresh / ".lock").exists()  # released at the end


def test_an_empty_run_dir_is_refused_and_nothing_is_written_here(tmp_path):
    for key in ("hydra.run.dir", "hydra.sweep.dir"):
        multirun = ["-m"] if key == "hydra.sweep.dir" else []
        proc = run_cli(*multirun, *SMOKE, f"{key}=", cwd=tmp_path)
        assert one_sentence(proc) == (
            f"dltrain: {key} is empty, which would write into the current folder: give it a "
            f"directory, or leave {key} out for a new one under outputs/.")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("where", "says"), [
    ("file/run", "cannot be created: {tmp}/file is a file, not a folder."),
    ("/proc/dltrain/run", "cannot be written (in /proc): no such file or directory."),
])
def test_an_output_folder_that_cannot_be_written_is_one_sentence(tmp_path, where, says):
    (tmp_path / "file").write_text("not a folder")
    run_dir = where if where.startswith("/") else f"{tmp_path}/{where}"
    proc = run_cli(*SMOKE, f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert one_sentence(proc) == (f"dltrain: The run directory {run_dir} "
                                  f"{says.format(tmp=tmp_path)}")


def test_resume_of_a_run_stopped_before_its_first_checkpoint_starts_it_again(make_cfg,
                                                                             tmp_path):
    from dltrain.run import run
    from dltrain.training.signals import StopRequest

    run_dir = tmp_path / "run"
    stop = StopRequest()
    stop.request("SIGTERM")  # as a signal while the data loads: no checkpoint yet
    assert run(make_cfg(*SMOKE, "logger=none"), run_dir, stop=stop).status == "interrupted"
    assert not (run_dir / "checkpoints" / "last.pt").exists()

    proc = run_cli("resume", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (f"{run_dir} has no checkpoint: the run starts again from its config "
            f"({run_dir / '.hydra' / 'config.yaml'}).") in proc.stdout + proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert (run_dir / "checkpoints" / "last.pt").exists()
