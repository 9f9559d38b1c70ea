"""The run directory in-process: its lock, a new run refused over an old one, a failed resume
that leaves the run as it was, folders that cannot be written, a run stopped before its first
checkpoint (issue 21, "Lost or overwritten work")."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import dltrain
from dltrain.cli.preflight import preflight
from dltrain.errors import ConfigError
from dltrain.lock import LOCK_FILE, held_by, take
from dltrain.outdir import check_writable, run_marks
from dltrain.run import run
from dltrain.training.signals import StopRequest

SMOKE = ["data=moons", "trainer=smoke", "logger=none"]


def files(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory and its bytes."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*"))
            if p.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A completed smoke run, copied afresh by `done` for each test that changes it."""
    from hydra import compose, initialize_config_dir

    from dltrain.cli import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=SMOKE)
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    assert run(cfg, run_dir).status == "completed"
    return run_dir


@pytest.fixture
def done(finished, tmp_path) -> Path:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


class Holder:
    """Another process that takes a directory's lock and holds it until killed."""

    def __init__(self, run_dir: Path) -> None:
        code = ("import sys, dltrain.lock as l; lock = l.take(sys.argv[1]); print('held', "
                "flush=True); sys.stdin.read()")
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == "held"  # the lock is taken: no sleeping
        self.says = (f"is in use by process {self.proc.pid} on {socket.gethostname()} (its "
                     f"lock {run_dir / '.lock'}): wait until it ends, or write this run to "
                     "another directory.")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


# --- the lock --------------------------------------------------------------------------------


def test_a_held_lock_refuses_a_second_taker_naming_the_holder_and_is_free_once_released(
        tmp_path):
    lock = take(tmp_path)
    assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()} {socket.gethostname()}\n"
    with pytest.raises(ConfigError) as refused:
        take(tmp_path)  # flock: a second open file is refused even in the same process
    assert f"is in use by process {os.getpid()} on {socket.gethostname()}" in str(refused.value)
    assert held_by(tmp_path) == f"process {os.getpid()} on {socket.gethostname()}"
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists() and held_by(tmp_path) is None
    with take(tmp_path):  # free again
        pass


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path):
    holder = Holder(tmp_path)
    assert held_by(tmp_path) == f"process {holder.proc.pid} on {socket.gethostname()}"
    holder.kill()
    assert (tmp_path / LOCK_FILE).exists()  # SIGKILL left the file, not the lock
    assert held_by(tmp_path) is None
    with take(tmp_path) as lock:
        assert (tmp_path / LOCK_FILE).read_text().split()[0] == str(os.getpid())
        assert lock.path == tmp_path / LOCK_FILE


def test_a_run_and_a_resume_refuse_a_directory_another_process_holds(make_cfg, done):
    before = files(done)
    holder = Holder(done)
    try:
        for result in (run(make_cfg(*SMOKE, "trainer.max_steps=40"), done, resume=True),
                       run(make_cfg(*SMOKE, "trainer.resume=auto"), done)):
            assert result.exit_code == 2
            assert result.summary["error"] == (
                f"{done} is in use by process {holder.proc.pid} on {socket.gethostname()} "
                f"(its lock {done / LOCK_FILE}): wait until it ends, or write this run to "
                "another directory.")
        assert files(done) == {**before, LOCK_FILE: files(done)[LOCK_FILE]}  # nothing written
    finally:
        holder.kill()
    more = run(make_cfg(*SMOKE, "trainer.max_steps=40"), done, resume=True)
    assert more.status == "completed" and more.summary["steps"] == 40
    assert not (done / LOCK_FILE).exists()  # released when the run ended


def test_the_lock_is_released_when_the_run_fails(make_cfg, tmp_path, monkeypatch):
    def boom(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("dltrain.run.fit", boom)
    assert run(make_cfg(*SMOKE), tmp_path).status == "failed"
    assert not (tmp_path / LOCK_FILE).exists() and held_by(tmp_path) is None


# --- a new run over an old one ---------------------------------------------------------------


def test_a_new_run_into_a_directory_that_holds_a_run_is_refused_and_changes_nothing(
        make_cfg, done):
    before = files(done)
    result = run(make_cfg(*SMOKE, "optim.lr=0.5"), done)
    assert result.exit_code == 2
    assert result.summary["error"] == (
        f"{done} already holds a run (checkpoints/, metrics.jsonl, summary.json): continue it "
        f"with dltrain resume {done}, or write the new run to another directory.")
    assert files(done) == before


def test_trainer_resume_auto_still_continues_its_own_directory(make_cfg, done):
    result = run(make_cfg(*SMOKE, "trainer.resume=auto", "trainer.max_steps=40"), done)
    assert result.status == "completed" and result.summary["steps"] == 40


def test_a_directory_whose_run_never_trained_is_taken_over(make_cfg, tmp_path):
    (tmp_path / ".hydra").mkdir()
    (tmp_path / "summary.json").write_text(json.dumps({"status": "failed", "error": "bad data"}))
    assert run_marks(tmp_path) == []
    assert run(make_cfg(*SMOKE), tmp_path).status == "completed"


def test_dltrain_train_refuses_a_directory_that_holds_a_run_and_an_empty_run_dir(done):
    before = files(done)
    with pytest.raises(ConfigError, match="already holds a run"):
        dltrain.train(*SMOKE, run_dir=done)
    assert files(done) == before  # .hydra/ not rewritten
    with pytest.raises(ConfigError, match="run_dir is empty, which would write into the "
                                          "current folder"):
        dltrain.train(*SMOKE, run_dir="")


# --- a failed resume leaves the run as it was ------------------------------------------------


def test_a_resume_refused_by_its_checkpoint_leaves_the_run_as_it_was(make_cfg, done):
    (done / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    before = files(done)
    result = run(make_cfg(*SMOKE, "trainer.resume=auto"), done)  # auto: not a resume=True
    assert result.exit_code == 2 and str(done / "checkpoints" / "last.pt") in \
        result.summary["error"]
    assert files(done) == before


def test_a_resume_refused_for_its_statistics_leaves_the_run_as_it_was(make_cfg, done):
    before = files(done)
    result = run(make_cfg(*SMOKE, "trainer.resume=auto", "data.n_train=900"), done)
    assert result.exit_code == 2, result.summary
    assert "other statistics" in result.summary["error"]
    assert files(done) == before


def test_a_refused_override_leaves_the_runs_config_as_it_was(make_cfg, done):
    before = files(done)
    result = run(make_cfg(*SMOKE, "trainer.max_steps=40", "model.hidden=[16]"), done,
                 resume=True)
    assert result.exit_code == 2 and "do not fit the model" in result.summary["error"]
    assert files(done) == before  # .hydra/config.yaml does not take the refused model


def test_a_resume_that_fails_before_training_restarts_leaves_the_run_as_it_was(
        make_cfg, done, monkeypatch):
    def boom(*_args, **_kwargs):
        raise RuntimeError("boom")

    before = files(done)
    monkeypatch.setattr("dltrain.run.restore", boom)
    result = run(make_cfg(*SMOKE, "trainer.max_steps=40"), done, resume=True)
    assert (result.status, result.exit_code) == ("failed", 1)
    assert result.summary["error"] == "RuntimeError: boom"
    assert files(done) == before


def test_a_resume_that_fails_once_training_restarted_is_the_runs_new_end(
        make_cfg, done, monkeypatch):
    def boom(*_args, **_kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("dltrain.run.fit", boom)
    result = run(make_cfg(*SMOKE, "trainer.max_steps=40"), done, resume=True)
    assert result.status == "failed"
    summary = json.loads((done / "summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: boom"
    assert "max_steps: 40" in (done / ".hydra" / "config.yaml").read_text()


# --- folders that cannot be written ----------------------------------------------------------


def test_a_path_under_a_file_is_refused_in_one_sentence(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError) as refused:
        check_writable(tmp_path / "file" / "run")
    assert str(refused.value) == (f"The run directory {tmp_path / 'file' / 'run'} cannot be "
                                  f"created: {tmp_path / 'file'} is a file, not a folder.")


def read_only(monkeypatch, *folders: Path) -> None:
    """os.access says these folders cannot be written (chmod does not stop root)."""
    real = os.access
    blocked = {os.path.abspath(f) for f in folders}
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if os.path.abspath(path) in blocked and mode & os.W_OK else real(path, mode, **kw)))


def test_a_read_only_checkpoints_folder_is_refused_before_anything_trains(
        make_cfg, tmp_path, monkeypatch):
    (tmp_path / "checkpoints").mkdir()
    read_only(monkeypatch, tmp_path / "checkpoints")
    result = run(make_cfg(*SMOKE), tmp_path)
    assert result.exit_code == 2
    assert result.summary["error"] == (f"The run's folder {tmp_path / 'checkpoints'} cannot be "
                                       "written: permission denied.")
    assert not (tmp_path / "metrics.jsonl").exists()  # nothing trained


def test_the_preflight_refuses_a_run_directory_in_a_read_only_folder(tmp_path, monkeypatch):
    read_only(monkeypatch, tmp_path)
    with pytest.raises(ConfigError) as refused:
        preflight([f"hydra.run.dir={tmp_path / 'run'}"], False)
    assert str(refused.value) == (f"The run directory {tmp_path / 'run'} cannot be written "
                                  f"(in {tmp_path}): permission denied.")


def test_a_folder_the_kernel_refuses_is_refused_even_to_root():
    with pytest.raises(ConfigError, match="cannot be written"):
        check_writable(Path("/proc/dltrain-run"))


# --- stopped before the first checkpoint -----------------------------------------------------


def test_a_run_stopped_before_its_first_checkpoint_says_so(make_cfg, tmp_path, caplog):
    stop = StopRequest()
    stop.request("SIGTERM")  # as a signal while the data loads
    with caplog.at_level(logging.WARNING, logger="dltrain"):
        result = run(make_cfg(*SMOKE), tmp_path, stop=stop)
    assert result.status == "interrupted"
    assert not (tmp_path / "checkpoints" / "last.pt").exists()
    assert "checkpoint saved" not in caplog.text
    assert (f"interrupted by SIGTERM before the first checkpoint (none saved); dltrain resume "
            f"{tmp_path} starts the run again from its config") in caplog.text


def test_a_restart_starts_the_run_again_and_its_first_attempts_record_goes(make_cfg, tmp_path):
    stop = StopRequest()
    stop.request("SIGTERM")
    run(make_cfg(*SMOKE), tmp_path, stop=stop)
    (tmp_path / "metrics.jsonl").write_text('{"step": 3, "train/loss": 9.0}\n')  # an attempt's
    result = run(make_cfg(*SMOKE), tmp_path, restart=True)
    assert result.status == "completed" and result.summary["steps"] == 20
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").open()]
    assert steps == sorted(steps) and 3 not in steps
