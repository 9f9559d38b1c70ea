"""Signals at every moment of a run, in-process (issue 21, "Signals at every moment").

Each signal is delivered at a chosen point, deterministically: a function of the run is
wrapped to raise it (signal.raise_signal runs the handler before it returns). The exit code
and summary.json must agree whatever the moment: 130 and status interrupted where the run
stopped, 0 and completed where it finished.
"""

from __future__ import annotations

import json
import logging
import signal
from pathlib import Path

import pytest
from torch.optim.optimizer import register_optimizer_step_post_hook

import dltrain.run
import dltrain.rundir
import dltrain.training.checkpoint
import dltrain.training.loop
from dltrain.run import run
from dltrain.training.checkpoint import load_checkpoint
from dltrain.training.signals import StopRequest

# 2 epochs of 3 steps: last.pt is written at both validations, best.pt at least at the first
SMOKE = ("data=moons", "data.n_train=256", "trainer=smoke", "trainer.max_steps=null",
         "logger=none")


class Escaped(Exception):
    """A signal that reached the test's own handler: dltrain had none installed then."""


@pytest.fixture(autouse=True)
def escaped_signals():
    """Outside dltrain's handlers a SIGTERM would kill the test process and a SIGINT stop
    pytest: here either raises Escaped, so that a test fails instead."""

    def escape(signum, _frame):
        raise Escaped(signal.Signals(signum).name)

    previous = {s: signal.signal(s, escape) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


def raising(*names: str):
    """A wrapper of a function that first delivers the signals `names` to this process."""

    def wrap(real):
        def wrapped(*args, **kwargs):
            for name in names:
                signal.raise_signal(signal.Signals[name])
            return real(*args, **kwargs)
        return wrapped
    return wrap


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def must_not_run(*_args, **_kwargs):
    pytest.fail("the run went on after it was asked to stop")


# --- the handlers themselves ---------------------------------------------------------------

def test_installed_for_a_command_a_signal_before_any_run_stops_at_once():
    stop = StopRequest()
    previous = stop.install()
    try:
        assert StopRequest.current() is stop  # what `dltrain resume`'s run() finds
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
        assert stop.forced and stop.signal == "SIGTERM"
        stop.settle()  # the exit code is chosen: only noted from here
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)
        assert stop.signal == "SIGINT"
    finally:
        stop.restore(previous)
    assert signal.getsignal(signal.SIGINT) is previous[signal.SIGINT]


def test_after_a_run_a_late_signal_is_only_noted():
    stop = StopRequest()
    previous = stop.install()
    try:
        with stop.on_signals(second_stops=False):
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # no at_once block: a request, not a stop
            assert stop.requested and not stop.forced
            with pytest.raises(KeyboardInterrupt), stop.at_once():
                signal.raise_signal(signal.SIGINT)
        assert stop.installed()  # main()'s handlers stay, the run's block ended
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    finally:
        stop.restore(previous)


def test_after_a_forced_stop_whatever_is_raised_is_the_interrupt():
    stop = StopRequest()
    with pytest.raises(RuntimeError), stop.at_once():  # not forced: the error stands
        raise RuntimeError("a real failure")
    stop.forced = True
    with pytest.raises(KeyboardInterrupt) as caught, stop.at_once():
        raise RuntimeError("[enforce fail at inline_container.cc:672] unexpected pos 46 vs 0")
    assert isinstance(caught.value.__cause__, RuntimeError)


# --- a run, stopped at each moment ---------------------------------------------------------

@pytest.mark.parametrize("phase, after, name", [("validate", "job_data", "SIGTERM"),
                                               ("job_data", "build_job", "SIGINT")])
def test_a_signal_before_training_ends_interrupted_with_a_summary_and_goes_no_further(
        make_cfg, tmp_path, monkeypatch, phase, after, name):
    """A signal while the config is checked, or while the data loads: the next phase never
    runs, the run ends interrupted (130) with its summary, and no checkpoint."""
    monkeypatch.setattr(dltrain.run, phase, raising(name)(getattr(dltrain.run, phase)))
    monkeypatch.setattr(dltrain.run, after, must_not_run)
    result = run(make_cfg(*SMOKE), tmp_path)
    assert (result.status, result.exit_code) == ("interrupted", 130)
    assert summary(tmp_path)["status"] == "interrupted"
    assert name in summary(tmp_path)["error"]
    assert not (tmp_path / "checkpoints" / "last.pt").exists()


def test_a_second_ctrl_c_during_a_checkpoint_write_keeps_the_previous_one(
        make_cfg, tmp_path, monkeypatch):
    """Two SIGINTs inside torch.save's writing of the second last.pt: torch turns the
    KeyboardInterrupt into "RuntimeError: unexpected pos"; the run still ends interrupted."""
    real = dltrain.training.checkpoint.atomic_write
    kept: list[bytes] = []

    class Interrupting:
        """The file torch.save writes to; its third write is interrupted twice."""

        def __init__(self, f) -> None:
            self.f, self.writes = f, 0

        def write(self, data) -> int:
            self.writes += 1
            if self.writes == 3:
                signal.raise_signal(signal.SIGINT)  # the first: finish the step, save, stop
                signal.raise_signal(signal.SIGINT)  # the second: stop at once
            return self.f.write(data)

        def __getattr__(self, name):
            return getattr(self.f, name)

    def atomic_write(path, write):
        if path.name == "last.pt" and path.exists():
            kept.append(path.read_bytes())
            return real(path, lambda f: write(Interrupting(f)))
        return real(path, write)

    monkeypatch.setattr(dltrain.training.checkpoint, "atomic_write", atomic_write)
    result = run(make_cfg(*SMOKE), tmp_path)
    assert kept, "the second last.pt was never written"
    assert (result.status, result.exit_code) == ("interrupted", 130), result.summary
    assert summary(tmp_path)["status"] == "interrupted"
    assert "RuntimeError" not in summary(tmp_path).get("error", "")
    folder = tmp_path / "checkpoints"
    assert (folder / "last.pt").read_bytes() == kept[0]  # the previous checkpoint, intact
    assert load_checkpoint(folder / "last.pt")["state"]["step"] == 3
    assert not [p.name for p in folder.iterdir() if p.name.endswith(".tmp")]


def test_a_signal_at_the_last_step_completes_the_run(make_cfg, tmp_path):
    """Nothing is left to train: the final validation and the test run, exit 0 (stopped there,
    the run could be neither resumed, its budget spent, nor tested)."""
    steps = []

    def at_the_last_step(*_args) -> None:
        steps.append(1)
        if len(steps) == 6:
            signal.raise_signal(signal.SIGTERM)

    hook = register_optimizer_step_post_hook(at_the_last_step)
    try:
        result = run(make_cfg(*SMOKE), tmp_path)
    finally:
        hook.remove()
    assert (result.status, result.exit_code) == ("completed", 0), result.summary
    assert summary(tmp_path)["status"] == "completed" and summary(tmp_path)["steps"] == 6
    assert "accuracy" in summary(tmp_path)["test"]


@pytest.mark.parametrize("moment", ["final validation", "test"])
def test_a_signal_once_training_is_over_completes_the_run_and_says_so(
        make_cfg, tmp_path, monkeypatch, caplog, moment):
    overrides = (*SMOKE, "trainer.max_epochs=1")  # one validation: the final one
    if moment == "test":
        monkeypatch.setattr(dltrain.run, "test_best", raising("SIGTERM")(dltrain.run.test_best))
    else:
        monkeypatch.setattr(dltrain.training.loop, "evaluate",
                            raising("SIGTERM")(dltrain.training.loop.evaluate))
    with caplog.at_level(logging.WARNING, logger="dltrain"):
        result = run(make_cfg(*overrides), tmp_path)
    assert (result.status, result.exit_code) == ("completed", 0)
    assert summary(tmp_path)["status"] == "completed" and "accuracy" in summary(tmp_path)["test"]
    assert "SIGTERM came after training had finished" in caplog.text


def test_a_second_ctrl_c_during_the_test_stops_it_interrupted(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setattr(dltrain.run, "test_best",
                        raising("SIGINT", "SIGINT")(dltrain.run.test_best))
    result = run(make_cfg(*SMOKE), tmp_path)
    assert (result.status, result.exit_code) == ("interrupted", 130)
    assert summary(tmp_path)["status"] == "interrupted"


@pytest.mark.parametrize("names", [("SIGTERM",), ("SIGINT", "SIGINT")])
def test_a_signal_as_the_summary_is_written_changes_nothing(
        make_cfg, tmp_path, monkeypatch, names):
    """The handlers stay installed until summary.json is written and the exit code chosen:
    a signal then is noted, and the run is what its summary says (completed, exit 0)."""
    real = dltrain.rundir.write_json

    def write_json(path, obj):
        real(path, obj)
        if Path(path).name == "summary.json":
            for name in names:
                signal.raise_signal(signal.Signals[name])

    monkeypatch.setattr(dltrain.rundir, "write_json", write_json)
    result = run(make_cfg(*SMOKE), tmp_path)
    assert (result.status, result.exit_code) == ("completed", 0)
    assert summary(tmp_path)["status"] == "completed"
    assert load_checkpoint(tmp_path / "checkpoints" / "last.pt")["state"]["step"] == 6


def test_one_reader_of_dltrain_fault_for_kills_and_signals(monkeypatch):
    from dltrain.training.faults import named

    monkeypatch.setenv("DLTRAIN_FAULT", "signal-at:task:SIGINT+SIGINT")
    assert named("signal-at") == ["task", "SIGINT+SIGINT"]
    assert named("after-last-checkpoint") is None
    monkeypatch.setenv("DLTRAIN_FAULT", "after-last-checkpoint:14")
    assert named("after-last-checkpoint") == ["14"] and named("signal-at") is None
    monkeypatch.setenv("DLTRAIN_FAULT", "after-last-checkpoint")
    assert named("after-last-checkpoint") == []
    monkeypatch.delenv("DLTRAIN_FAULT")
    assert named("after-last-checkpoint") is None
