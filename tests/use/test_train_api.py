"""`dltrain.train(...)`: runs trained in the test's own process, checked against the files
they write and against the real `dltrain` command given the same overrides."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from hydra.core.global_hydra import GlobalHydra

import dltrain
from dltrain.errors import ConfigError
from dltrain.report.jobs import launch_args
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e

SMOKE = ["trainer=smoke", "data=moons"]  # 20 steps on 1,800 points: a second or two
RUN_NAME = re.compile(r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[a-z0-9]{4}")  # conf/train.yaml
LOG_LINE = re.compile(r"\[\d\d:\d\d:\d\d\] \S")  # conf/hydra/job_logging/dltrain.yaml


@dataclass
class Calls:
    """Two calls of dltrain.train in one process, and the process around them."""

    home: Path  # the current directory during the calls
    first: object
    second: object
    handlers: tuple[list, list]  # the root logger's handlers before and after
    levels: tuple[int, int]
    draws: tuple[torch.Tensor, torch.Tensor]  # what the caller's torch stream drew next
    hydra: tuple[bool, bool]  # whether Hydra was initialised, before and after


def on_disk(run_dir: Path, name: str):
    text = (run_dir / name).read_text()
    return json.loads(text) if name.endswith(".json") else yaml.safe_load(text)


@pytest.fixture(scope="module")
def calls(tmp_path_factory) -> Calls:
    home = tmp_path_factory.mktemp("notebook")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    state = torch.get_rng_state()
    hydra = GlobalHydra.instance().is_initialized()
    cwd = os.getcwd()
    os.chdir(home)
    try:
        first = dltrain.train(*SMOKE, "optim.lr=0.01")
        second = dltrain.train(*SMOKE, "optim.lr=0.003", "trainer.seed=1")
    finally:
        os.chdir(cwd)
    after = torch.rand(4)
    torch.set_rng_state(state)
    return Calls(home, first, second, (handlers, list(root.handlers)), (level, root.level),
                 (torch.rand(4), after), (hydra, GlobalHydra.instance().is_initialized()))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory) -> Path:
    """The command line's run of the first call's overrides."""
    tmp = tmp_path_factory.mktemp("cli")
    proc = run_cli(*SMOKE, "optim.lr=0.01", f"hydra.run.dir={tmp / 'run'}", cwd=tmp)
    assert proc.returncode == 0, proc.stderr
    return tmp / "run"


def test_two_calls_in_one_process_are_two_runs_each_with_its_own_config(calls):
    first, second = calls.first, calls.second
    assert (first.status, second.status) == ("completed", "completed")
    assert first.exit_code == second.exit_code == 0
    # named as the CLI names runs: outputs/runs/DATE_TIME_TAG under the current directory
    for result in (first, second):
        assert result.run_dir.parent == calls.home / "outputs" / "runs"
        assert RUN_NAME.fullmatch(result.run_dir.name), result.run_dir.name
        assert result.summary == on_disk(result.run_dir, "summary.json")
        assert result.objective == result.summary["best"]["value"]
    assert first.run_dir != second.run_dir
    # each run's config is its own: the second does not inherit the first's overrides
    assert on_disk(first.run_dir, ".hydra/overrides.yaml") == [*SMOKE, "optim.lr=0.01"]
    assert on_disk(second.run_dir, ".hydra/overrides.yaml") == [*SMOKE, "optim.lr=0.003",
                                                                 "trainer.seed=1"]
    one, two = on_disk(first.run_dir, ".hydra/config.yaml"), on_disk(second.run_dir,
                                                                      ".hydra/config.yaml")
    assert (one["optim"]["lr"], one["trainer"]["seed"]) == (0.01, 0)
    assert (two["optim"]["lr"], two["trainer"]["seed"]) == (0.003, 1)
    assert first.summary["test"] != second.summary["test"]


def test_the_callers_logging_and_random_numbers_are_left_as_found(calls):
    assert calls.handlers[1] == calls.handlers[0] and calls.levels[1] == calls.levels[0]
    assert calls.hydra == (False, False)
    assert torch.equal(*calls.draws)  # the runs seeded torch; the caller's stream goes on
    # each run's log file holds its own lines only (its handler went with its call)
    for result, other in ((calls.first, calls.second), (calls.second, calls.first)):
        lines = (result.run_dir / "train.log").read_text().splitlines()
        assert lines and all(LOG_LINE.match(line) for line in lines), lines
        assert any(line.endswith(f"run directory: {result.run_dir}") for line in lines)
        assert str(other.run_dir) not in "\n".join(lines)


def test_the_same_overrides_give_the_cli_run_to_the_last_digit(calls, cli_run):
    api = calls.first.run_dir
    cli_summary = on_disk(cli_run, "summary.json")
    # seeded alike on the CPU: the same numbers, compared exactly
    assert calls.first.summary["test"] == cli_summary["test"]
    assert calls.first.summary["val"] == cli_summary["val"]
    assert calls.first.summary["best"] == cli_summary["best"]
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml"):
        assert on_disk(api, name) == on_disk(cli_run, name), name
    hydra_api, hydra_cli = on_disk(api, ".hydra/hydra.yaml"), on_disk(cli_run, ".hydra/hydra.yaml")
    assert hydra_api["hydra"]["runtime"]["output_dir"] == str(api)
    assert hydra_api["hydra"]["runtime"]["choices"] == hydra_cli["hydra"]["runtime"]["choices"]
    assert hydra_api["hydra"]["job"]["override_dirname"] == \
        hydra_cli["hydra"]["job"]["override_dirname"]

    def layout(run_dir: Path) -> set[str]:  # TensorBoard's file names hold a time and a pid
        return {re.sub(r"events\.out\.tfevents\..*", "events", str(p.relative_to(run_dir)))
                for p in run_dir.rglob("*") if p.is_file()}

    assert layout(api) == layout(cli_run)
    assert {".hydra/config.yaml", "checkpoints/last.pt", "checkpoints/best.pt",
            "summary.json", "train.log", "metrics.jsonl"} <= layout(api)
    # the log file reads as the CLI's: the same lines, in the same format
    api_log = (api / "train.log").read_text().splitlines()
    cli_log = (cli_run / "train.log").read_text().splitlines()
    assert len(api_log) == len(cli_log) and api_log[0][11:] == cli_log[0][11:]


def test_a_bad_override_raises_the_sentence_the_cli_prints(tmp_path, monkeypatch):
    proc = run_cli("optim.lrr=0.1", cwd=tmp_path)
    assert proc.returncode == 2
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as refused:
        dltrain.train("optim.lrr=0.1")
    assert proc.stderr.strip() == f"dltrain: {refused.value}"
    assert not (tmp_path / "outputs").exists()


def test_a_sweep_is_refused_with_a_sentence_for_python(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^optim\.lr=0\.1,0\.2 gives several values, and "
                                          r"dltrain\.train trains one run: call it once"):
        dltrain.train("optim.lr=0.1,0.2")
    assert not (tmp_path / "outputs").exists()


def test_a_run_refused_once_started_raises_its_sentence(tmp_path):
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ConfigError, match=rf"^trainer\.device=cuda:{count} is not available "
                                          "on this machine"):
        dltrain.train(*SMOKE, f"trainer.device=cuda:{count}", run_dir=tmp_path / "run")
    assert on_disk(tmp_path / "run", "summary.json")["status"] == "failed"


def test_a_diverged_run_is_a_result_in_the_directory_given(tmp_path):
    result = dltrain.train(*SMOKE, "optim=sgd", "optim.lr=1e12", run_dir=tmp_path / "mine")
    assert result.run_dir == tmp_path / "mine"
    assert (result.status, result.exit_code) == ("diverged", 1)
    assert result.summary == on_disk(tmp_path / "mine", "summary.json")
    assert result.summary["error"].startswith("The training loss became nan at step ")
    assert (tmp_path / "mine" / ".hydra" / "config.yaml").is_file()


def test_an_interrupt_saves_the_run_then_raises_keyboard_interrupt(tmp_path):
    """The notebook's interrupt is SIGINT: raised here after the 5th optimiser step."""
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps = []

    def interrupt(*_args) -> None:
        steps.append(1)
        if len(steps) == 5:
            signal.raise_signal(signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    hook = register_optimizer_step_post_hook(interrupt)
    try:
        with pytest.raises(KeyboardInterrupt, match="continue with: dltrain resume"):
            dltrain.train(*SMOKE, run_dir=tmp_path / "run")
    finally:
        hook.remove()
    assert signal.getsignal(signal.SIGINT) is before
    summary = on_disk(tmp_path / "run", "summary.json")
    assert (summary["status"], summary["steps"]) == ("interrupted", 5)
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_config_dir_adds_the_users_options(tmp_path):
    """`config_dir=` is the CLI's -cd DIR: DIR/trainer/tiny.yaml is trainer=tiny."""
    (tmp_path / "conf" / "trainer").mkdir(parents=True)
    (tmp_path / "conf" / "trainer" / "tiny.yaml").write_text(
        "defaults:\n  - smoke\n  - _self_\nmax_steps: 6\nlog_every: 3\nval_every: 3\n")
    result = dltrain.train("data=moons", "trainer=tiny", run_dir=tmp_path / "run",
                           config_dir=tmp_path / "conf")
    assert result.status == "completed" and result.summary["steps"] == 6
    hydra = on_disk(tmp_path / "run", ".hydra/hydra.yaml")["hydra"]
    assert hydra["runtime"]["choices"]["trainer"] == "tiny"
    # the report's command to run it again names the folder, as for a CLI run with -cd
    assert launch_args(tmp_path / "run") == ["-cd", str(tmp_path / "conf")]
