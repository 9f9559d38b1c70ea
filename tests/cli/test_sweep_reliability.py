"""Sweeps that are stopped or hold a bad value, through the real `dltrain -m` command: a
stopped sweep still writes its report (what ran, the stopped job as interrupted, the jobs
that never started) and exits 130; `dltrain report` says how far an interrupted job went;
one invalid value of a vectorised sweep fails its own job while the others train."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from dltrain.report import aggregate, exit_code, failure_lines, print_report, read_sweep
from tests.cli.test_safety import dltrain_command, wait_for_step
from tests.conftest import run_cli
from tests.test_report import done, make_job

# Six jobs: #0, #1 train one epoch; #2, #3 train until they are stopped; #4, #5 come after.
STOPPED = ["data=moons", "data.n_train=300", "model.hidden=[8]", "trainer=smoke",
           "trainer.max_steps=null", "trainer.max_epochs=1,100000,2", "trainer.seed=0,1"]


def stopped_sweep(tmp_path: Path, *launcher: str) -> tuple[subprocess.CompletedProcess, Path]:
    """The sweep STOPPED, sent SIGTERM once job #2 has trained 8 steps."""
    sweep = tmp_path / "sweep"
    proc = subprocess.Popen([*dltrain_command(), "-m", *launcher, *STOPPED,
                             f"hydra.sweep.dir={sweep}"], cwd=tmp_path, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_step(_job(sweep, 2, wait=proc) / "metrics.jsonl", 8, proc)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), sweep


def _job(sweep: Path, num: int, wait: subprocess.Popen | None = None) -> Path:
    """The directory of job `num` (waiting for it while `wait` runs)."""
    deadline = time.monotonic() + 120
    while True:
        found = sorted(sweep.glob(f"{num}_*")) if sweep.is_dir() else []
        if found:
            return found[0]
        assert wait is not None and wait.poll() is None, f"job #{num} never started"
        assert time.monotonic() < deadline, f"job #{num} did not start in time"
        time.sleep(0.01)


def _runs(sweep: Path) -> dict[str, str]:
    return {row["dir"].split("_")[0]: row["status"]
            for row in csv.DictReader((sweep / "runs.csv").open())}


@pytest.mark.e2e
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=vectorised"]],
                         ids=["basic", "vectorised"])
def test_a_stopped_sweep_writes_its_report_and_exits_130(tmp_path, launcher):
    proc, sweep = stopped_sweep(tmp_path, *launcher)
    assert proc.returncode == 130, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # the plan of the sweep, written when it started
    plan = yaml.safe_load((sweep / "jobs.yaml").read_text())
    assert len(plan) == 6 and plan[5][-2:] == ["trainer.max_epochs=2", "trainer.seed=1"]
    # the report of what ran: two completed, #2 (and its stack mate #3) interrupted, the rest
    # never started
    assert (sweep / "report.md").is_file() and (sweep / "report.csv").is_file()
    stacked = bool(launcher)
    assert _runs(sweep) == {"0": "completed", "1": "completed", "2": "interrupted",
                            **({"3": "interrupted"} if stacked else {"#3": "not started"}),
                            "#4": "not started", "#5": "not started"}
    summary = json.loads((_job(sweep, 2) / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["steps"] >= 8
    out = proc.stdout
    assert f"stopped: {_job(sweep, 2).name}: interrupted: stopped at step " in out
    assert "#4: not started: the sweep stopped before it (trainer.max_epochs=2 trainer.seed=0)" \
        in out
    markdown = (sweep / "report.md").read_text()
    assert "not started" in markdown and "interrupted" in markdown

    # `dltrain report` of the stopped sweep says the same, and how far #2 went
    again = run_cli("report", str(sweep), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "no summary.json" not in again.stdout
    assert f"interrupted: stopped at step {summary['steps']} (epoch {summary['epochs']}); " \
           f"continue it with dltrain resume {_job(sweep, 2)}" in again.stdout
    assert "#5: not started" in again.stdout


@pytest.mark.e2e
def test_one_bad_value_of_a_vectorised_sweep_is_refused_before_any_job(tmp_path):
    """A seed no generator takes, among good ones: the whole sweep is refused in one sentence
    before anything trains (a hole in the grid found after an hour of its other jobs is worse
    than a typo answered at once), where the stack used to crash and leave no job. The
    launcher's own fallback (a refused member runs alone) is tested in-process."""
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "hydra/launcher=vectorised", "data=moons", "data.n_train=300",
                   "model.hidden=[8]", "trainer=smoke",
                   "trainer.seed=0,1,2,100000000000000000000000", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert "trainer.seed=100000000000000000000000" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not sweep.exists() or not any(sweep.iterdir())


# -- the report of a stopped sweep, in-process -------------------------------------------


def _plan(sweep: Path, jobs: list[list[str]]) -> None:
    (sweep / "jobs.yaml").write_text(yaml.safe_dump(jobs))


def test_the_report_lists_interrupted_jobs_with_their_progress_and_jobs_never_started(
        tmp_path):
    make_job(tmp_path, "0_lr=0.1", {"optim.lr": 0.1, "trainer.seed": 0}, done(0.9, 0.9))
    make_job(tmp_path, "1_lr=0.1", {"optim.lr": 0.1, "trainer.seed": 1},
             {"status": "interrupted", "steps": 12, "epochs": 1})
    _plan(tmp_path, [[f"optim.lr={lr}", f"trainer.seed={seed}"]
                     for lr in (0.1, 0.2) for seed in (0, 1)])
    report = aggregate(tmp_path, read_sweep(tmp_path))
    assert [(j.name, j.status) for j in report.jobs] == [
        ("0_lr=0.1", "completed"), ("1_lr=0.1", "interrupted"), ("#2", "not started"),
        ("#3", "not started")]
    assert [r.status for r in report.rows] == ["1 completed, 1 interrupted", "2 not started"]
    assert failure_lines(report) == [
        f"1_lr=0.1: interrupted: stopped at step 12 (epoch 1); continue it with dltrain "
        f"resume {tmp_path / '1_lr=0.1'}",
        "#2: not started: the sweep stopped before it (optim.lr=0.2 trainer.seed=0)",
        "#3: not started: the sweep stopped before it (optim.lr=0.2 trainer.seed=1)"]
    assert exit_code(report) == 130
    console = Console(record=True, width=200)
    print_report(report, console)
    text = console.export_text()
    assert "4 runs (2 not started), 2 configurations" in text
    assert "no summary.json" not in text


def test_a_planned_job_that_ran_twice_needs_two_directories(tmp_path):
    make_job(tmp_path, "0_a", {"optim.lr": 0.1}, done(0.9, 0.9))
    _plan(tmp_path, [["optim.lr=0.1"], ["optim.lr=0.1"]])
    assert [j.name for j in read_sweep(tmp_path)] == ["0_a", "#1"]


def test_a_sweep_stopped_before_its_first_job_lists_every_job_as_not_started(tmp_path):
    _plan(tmp_path, [["optim.lr=0.1"], ["optim.lr=0.2"]])
    report = aggregate(tmp_path, read_sweep(tmp_path))
    assert [j.status for j in report.jobs] == ["not started", "not started"]


def test_the_plan_is_hydras_basic_sweeper_product_and_none_for_a_search():
    from omegaconf import OmegaConf

    from dltrain.sweep import BASIC_SWEEPER, planned_jobs

    config = OmegaConf.create({"hydra": {
        "sweeper": {"_target_": BASIC_SWEEPER, "params": {"optim.lr": "0.1,0.2"}},
        "overrides": {"task": ["trainer=smoke", "trainer.seed=range(0,2)"]}}})
    assert planned_jobs(config) == [
        ["optim.lr=0.1", "trainer=smoke", "trainer.seed=0"],
        ["optim.lr=0.1", "trainer=smoke", "trainer.seed=1"],
        ["optim.lr=0.2", "trainer=smoke", "trainer.seed=0"],
        ["optim.lr=0.2", "trainer=smoke", "trainer.seed=1"]]
    config.hydra.sweeper._target_ = "hydra_plugins.hydra_optuna_sweeper.OptunaSweeper"
    assert planned_jobs(config) is None


def test_only_a_sweeps_job_has_a_sweep_to_report(tmp_path):
    from dltrain.sweep import report_interrupted_sweep, sweep_dir_of

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"mode": "RUN"}}))
    assert sweep_dir_of(run) is None and report_interrupted_sweep([run]) is None
    job = make_job(tmp_path / "sweep", "0_a", {"optim.lr": 0.1},
                   {"status": "interrupted", "steps": 3, "epochs": 0})
    (job / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"mode": "MULTIRUN"}}))
    assert sweep_dir_of(job) == tmp_path / "sweep"
    assert report_interrupted_sweep([job]) == 130
    assert "stopped at step 3" in (tmp_path / "sweep" / "report.md").read_text()


def test_a_job_that_never_started_has_the_values_of_the_jobs_that_ran(tmp_path):
    make_job(tmp_path, "0_a", {"model.hidden": "[8]", "trainer.seed": 0}, done(0.9, 0.9))
    _plan(tmp_path, [["model.hidden=[8]", f"trainer.seed={seed}"] for seed in (0, 1)])
    report = aggregate(tmp_path, read_sweep(tmp_path))
    assert report.keys == () and report.seeds == ("trainer.seed",)  # [8] in both, not "[8]"
    assert [r.status for r in report.rows] == ["1 completed, 1 not started"]


# -- a bad value among a vectorised sweep's, in-process ------------------------------------


def test_a_refused_value_runs_alone_and_the_others_still_stack(make_cfg):
    from dltrain.vectorised.plan import plan

    cfgs = [make_cfg("data=moons", "trainer=smoke", f"trainer.seed={seed}")
            for seed in (0, 1, 2, 10**23)]
    result = plan(cfgs, {"moons"})
    assert result.stacks == [[0, 1, 2]] and list(result.alone) == [3]
    assert result.alone[3].startswith(
        "its config is refused (trainer.seed=100000000000000000000000 ")


def test_a_member_that_cannot_be_built_sends_its_stack_to_run_alone(make_cfg, tmp_path,
                                                                     monkeypatch):
    import torch

    from dltrain.vectorised import members
    from dltrain.vectorised.model import Unstackable

    def out_of_memory(*_args, **_kwargs):
        raise RuntimeError("not enough memory")

    cfgs = [make_cfg("data=moons", "trainer=smoke", f"trainer.seed={seed}") for seed in (0, 1)]
    monkeypatch.setattr(members, "build_job", out_of_memory)
    with pytest.raises(Unstackable, match=r"building 0_a failed \(RuntimeError: not enough"):
        members.build_members(cfgs, [tmp_path / "0_a", tmp_path / "1_b"], torch.device("cpu"))
