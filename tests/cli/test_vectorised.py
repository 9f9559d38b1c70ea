"""hydra/launcher=vectorised through the real `dltrain` command: one stack, jobs that run
alone and say why, every member's run directory as a run's, the report and the HParams tab."""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict

from tests.cli.test_sweeps import hparams_table
from tests.conftest import ROOT, run_cli


@pytest.mark.e2e
def test_a_vectorised_sweep_writes_every_run_as_its_own(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "hydra/launcher=vectorised", "data=moons", "data.n_train=300",
                   "model.hidden=[8]", "trainer=smoke", "trainer.seed=0,1", "optim=adam,lbfgs",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "Launching 4 jobs: 1 vectorised stack (2 jobs), 2 alone" in out
    assert "stack 1: #0, #2 (2 jobs differing in trainer.seed)" in out
    assert ("#1, #3 alone: optim=lbfgs: L-BFGS runs a line search of its own length in every "
            "step, which members cannot share (optim=adam stacks)") in out

    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert [p.name.split("_")[0] for p in jobs] == ["0", "1", "2", "3"]
    for job in jobs:
        for name in (".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/hydra.yaml",
                     "summary.json", "metrics.jsonl", "train.log", "checkpoints/last.pt",
                     "checkpoints/best.pt"):
            assert (job / name).is_file(), f"{job.name}: no {name}"
        assert list((job / "tb").glob("events.out.tfevents.*"))
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["test"]["accuracy"] > 0
        stacked = "optim=adam" in job.name
        assert ("vectorised" in summary) == stacked
        assert ("in a vectorised stack" in (job / "train.log").read_text()) == stacked
    overrides = OmegaConf.load(jobs[2] / ".hydra" / "overrides.yaml")
    assert list(overrides) == ["data=moons", "data.n_train=300", "model.hidden=[8]",
                               "trainer=smoke", "trainer.seed=1", "optim=adam"]
    assert OmegaConf.load(jobs[2] / ".hydra" / "config.yaml").trainer.seed == 1

    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert sorted((r["optim"], r["n"], r["status"]) for r in rows) == [
        ("adam", "2", "completed"), ("lbfgs", "2", "completed")]
    experiment, groups = hparams_table(sweep)  # the HParams tab sees four runs alike
    assert sum(len(g.sessions) for g in groups) == 4
    assert "test/accuracy" in {m.name.tag for m in experiment.metric_infos}


@pytest.mark.e2e
def test_a_vectorised_sweep_stacks_physics_informed_runs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "hydra/launcher=vectorised", "pde=poisson1d", "trainer=smoke",
                   "trainer.seed=0,1", "optim=adam,adam_lbfgs", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "Launching 4 jobs: 1 vectorised stack (2 jobs), 2 alone" in out
    assert ("#1, #3 alone: optim=adam_lbfgs: L-BFGS runs a line search of its own length in "
            "every step, which members cannot share (optim=adam stacks)") in out
    summaries = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/summary.json")}
    stacked = {k: v for k, v in summaries.items() if "optim=adam," in k}
    assert len(summaries) == 4 and len(stacked) == 2
    for name, summary in summaries.items():
        assert summary["status"] == "completed", name
        assert summary["pde"]["equation"] == "poisson1d"
        assert ("vectorised" in summary) == (name in stacked)
        assert 0 < summary["test"]["rel_l2"] < 2
    # each member drew its own points and started from its own weights: different fields
    assert len({s["test"]["rel_l2"] for s in stacked.values()}) == 2


def test_hydra_finds_the_launcher_without_importing_torch():
    code = ("import sys\n"
            "from hydra.core.plugins import Plugins\n"
            "from hydra.plugins.launcher import Launcher\n"
            "names = [p.__name__ for p in Plugins.instance().discover(Launcher)]\n"
            "print('VectorisedLauncher' in names, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout
    assert out.split() == ["True", "False"]


def test_a_derived_job_config_is_the_config_hydra_composes(tmp_path):
    from hydra import compose, initialize_config_dir

    from dltrain.cli import conf_dir
    from hydra_plugins.dltrain_vectorised.vectorised_launcher import derive

    first = ["data=moons", "model.hidden=[16]", "optim=sgd", "trainer.seed=0", "optim.lr=0.01"]
    other = ["data=moons", "model.hidden=[8,8]", "optim=sgd", "trainer.seed=3", "optim.lr=0.5"]
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
        base = compose("train", overrides=first, return_hydra_config=True)
        composed = compose("train", overrides=other, return_hydra_config=True)
    derived = derive(base, OverridesParser.create().parse_overrides(other))
    assert OmegaConf.to_yaml(derived) == OmegaConf.to_yaml(composed)


def test_the_launchers_loader_composes_each_kind_of_job_once(tmp_path):
    """Hydra composes a job of each kind (the same groups chosen, the same keys set); every
    other job's config is derived, and equals what Hydra composes for it."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.types import RunMode

    from dltrain.cli import conf_dir
    from hydra_plugins.dltrain_vectorised.vectorised_launcher import ComposingOnce

    hydra_loader = ConfigLoaderImpl(config_search_path=create_config_search_path(
        str(conf_dir())))
    master = hydra_loader.load_configuration(
        "train", ["data=moons", "trainer.seed=0,1,2", "model=mlp,cnn"], RunMode.MULTIRUN)
    jobs = [["data=moons", f"trainer.seed={seed}", f"model={model}"]
            for model in ("mlp", "cnn") for seed in (0, 1, 2)]
    jobs.append(["data=moons", "trainer.seed=1", "model=mlp", "trainer.seed=2"])

    composed: list[list[str]] = []

    class Counting(ConfigLoaderImpl):
        def load_sweep_config(self, master_config, sweep_overrides):
            composed.append(list(sweep_overrides))
            return super().load_sweep_config(master_config, sweep_overrides)

    loader = ComposingOnce(Counting(config_search_path=hydra_loader.config_search_path))
    validated = [loader.load_sweep_config(master, job) for job in jobs]
    launched = [loader.load_sweep_config(master, job) for job in jobs]
    assert all(a is b for a, b in zip(validated, launched, strict=True))  # made once
    for job, config in zip(jobs, launched, strict=True):
        assert OmegaConf.to_yaml(config) == OmegaConf.to_yaml(
            hydra_loader.load_sweep_config(master, job)), job
        config.trainer.seed = 99  # each job's config is its own
    again = loader.load_sweep_config(master, jobs[1])  # asked for a third time: made anew
    assert again is not launched[1] and again.trainer.seed == 1
    # one composition per model; a key set twice is left to Hydra
    assert composed == [jobs[0], jobs[3], jobs[6]]
    assert loader.list_groups("model") == hydra_loader.list_groups("model")


def test_a_members_config_resolves_hydra_interpolations_with_its_own_job():
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import setup_globals
    from hydra.types import RunMode

    from dltrain.cli import conf_dir
    from dltrain.sweep import register_resolvers
    from hydra_plugins.dltrain_vectorised.vectorised_launcher import VectorisedLauncher

    setup_globals()  # Hydra's resolvers, and dltrain's for the run directory's names
    register_resolvers()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf_dir())))
    master = loader.load_configuration("train", ["trainer.seed=0,1"], RunMode.MULTIRUN)
    held = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(master)  # as Hydra holds it while it launches
    try:
        jobs = {}
        for num, extra in [(5, "+note=${hydra:job.num}"), (6, "+note=${trainer.seed}")]:
            config = loader.load_sweep_config(master, ["trainer.seed=1", extra])
            with open_dict(config):
                config.hydra.job.id = config.hydra.job.num = num
            jobs[num] = config
        before = HydraConfig.instance().cfg
        task, run_dir = VectorisedLauncher._task(jobs[5])
        assert task.note == 5 and "hydra" not in task  # the job's own number
        assert HydraConfig.instance().cfg is before  # left as it was
        task, run_dir = VectorisedLauncher._task(jobs[6])
        assert task.note == 1 and Path(run_dir).name.startswith("6_")
    finally:
        HydraConfig.instance().cfg = held


@pytest.mark.e2e
def test_a_stacks_members_have_the_hydra_files_the_basic_launcher_writes(tmp_path):
    """A member's .hydra files are the ones its job gets from Hydra's basic launcher: the
    same config.yaml (what `dltrain resume` reads) and overrides.yaml, byte for byte, and the
    same hydra.yaml but for the launcher itself and the sweep's directory."""
    jobs = {}
    for launcher in ("basic", "vectorised"):
        sweep = tmp_path / launcher
        proc = run_cli("-m", f"hydra/launcher={launcher}", "data=moons", "data.n_train=300",
                       "model.hidden=[8]", "trainer=smoke", "trainer.seed=0,1",
                       f"hydra.sweep.dir={sweep}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        jobs[launcher] = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert "1 vectorised stack (2 jobs), 0 alone" in proc.stdout + proc.stderr
    assert [p.name for p in jobs["basic"]] == [p.name for p in jobs["vectorised"]]

    def hydra_node(job: Path, launcher: str) -> dict:
        text = (job / ".hydra" / "hydra.yaml").read_text()
        hydra = yaml.safe_load(text.replace(str(tmp_path / launcher), "SWEEP"))["hydra"]
        del hydra["launcher"], hydra["runtime"]["choices"]["hydra/launcher"]
        hydra["overrides"]["hydra"].remove(f"hydra/launcher={launcher}")
        return hydra

    for basic, member in zip(jobs["basic"], jobs["vectorised"], strict=True):
        for name in ("config.yaml", "overrides.yaml"):
            assert (member / ".hydra" / name).read_bytes() == \
                (basic / ".hydra" / name).read_bytes(), f"{member.name}: {name}"
        assert hydra_node(member, "vectorised") == hydra_node(basic, "basic")
        assert "(in a vectorised stack)" in (member / "train.log").read_text()


class Recorder:
    """Hydra's callbacks at a job's start and end, as the job saw them."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def on_job_start(self, config, task_function, **kwargs) -> None:
        self.calls.append(("start", config.hydra.job.num, config.hydra.runtime.output_dir,
                           HydraConfig.get().job.num))

    def on_job_end(self, config, job_return, **kwargs) -> None:
        self.calls.append(("end", config.hydra.job.num, job_return.status,
                           HydraConfig.get().job.num))


@pytest.fixture
def root_logging():
    """The root logger as it was before the test (a job's logging replaces its handlers)."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        if handler not in handlers:
            handler.close()
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def sweep(tmp_path):
    """A multirun's config held by Hydra as while it launches, and `job(num, overrides)`:
    a job's config as the launcher gets it."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.utils import setup_globals
    from hydra.types import RunMode

    from dltrain.cli import conf_dir
    from dltrain.sweep import register_resolvers

    setup_globals()
    register_resolvers()
    loader = ConfigLoaderImpl(config_search_path=create_config_search_path(str(conf_dir())))
    master = loader.load_configuration(
        "train", ["hydra/launcher=vectorised", f"hydra.sweep.dir={tmp_path / 'sweep'}",
                  "+hydra.job.env_set.DLTRAIN_JOB_PROBE=on", "data=moons", "trainer.seed=0,1",
                  "optim.lr=0.01"], RunMode.MULTIRUN)

    def job(num: int, overrides: list[str]):
        config = loader.load_sweep_config(master, overrides)
        with open_dict(config):
            config.hydra.job.id = config.hydra.job.num = num
        return config

    held = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(master)
    try:
        yield loader, master, job
    finally:
        HydraConfig.instance().cfg = held


@pytest.mark.parametrize("ends", ["returning", "raising"])
def test_a_members_job_is_the_job_hydras_run_job_makes(sweep, root_logging, ends):
    """For a member that has trained, the launcher does what Hydra's run_job does for a job,
    without its copies of the config: the same .hydra files byte for byte, the same
    JobReturn, callbacks, environment and HydraConfig around the task, its log lines in the
    job's train.log."""
    from hydra.core.utils import JobStatus, run_job
    from hydra.types import HydraContext

    from hydra_plugins.dltrain_vectorised.vectorised_launcher import (
        VectorisedLauncher,
        _save_job_files,
    )

    loader, master, job_config = sweep
    job = ["data=moons", "trainer.seed=1", "optim.lr=0.01", "+note=${trainer.seed}"]

    def task_function(cfg):
        hydra = HydraConfig.get()
        seen.append((hydra.job.num, hydra.runtime.output_dir, hydra.sweeper.get("direction"),
                     os.environ.get("DLTRAIN_JOB_PROBE"), cfg.trainer.seed))
        logging.getLogger("dltrain").info("the task's own line")
        if ends == "raising":
            raise ValueError("the task failed")
        return 0.75

    master_held = HydraConfig.instance().cfg
    made = {}
    for way in ("run_job", "member"):
        seen: list[tuple] = []
        recorder = Recorder()
        context = HydraContext(config_loader=loader, callbacks=recorder)
        config = job_config(7, job)
        if way == "run_job":
            ret = run_job(task_function=task_function, config=config,
                          job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir",
                          hydra_context=context)
            run_dir = Path(ret.hydra_cfg.hydra.runtime.output_dir)
        else:
            launcher = VectorisedLauncher()
            launcher.setup(hydra_context=context, task_function=task_function, config=master)
            task, run_dir = VectorisedLauncher._task(config)
            run_dir = Path(run_dir)
            _save_job_files(config)
            ret = launcher._member_job(config, task, task_function)
        assert HydraConfig.instance().cfg is master_held  # given back
        assert os.environ.get("DLTRAIN_JOB_PROBE") is None
        files = {p.name: p.read_bytes() for p in (run_dir / ".hydra").iterdir()}
        log_lines = [line.split("] ", 1)[1] for line in
                     (run_dir / "train.log").read_text().splitlines()]
        made[way] = (files, log_lines, seen, recorder.calls, ret, run_dir)
        shutil.rmtree(run_dir)  # the other way writes the same directory

    files, log_lines, seen, calls, ret, run_dir = made["member"]
    hydras = made["run_job"]
    assert sorted(files) == ["config.yaml", "hydra.yaml", "overrides.yaml"]
    assert files == hydras[0]  # byte for byte
    assert b"note: ${trainer.seed}" in files["config.yaml"]  # as composed, not resolved
    assert log_lines == hydras[1] == ["the task's own line"]
    assert seen == hydras[2] == [(7, str(run_dir), None, "on", 1)]
    assert calls == hydras[3] == [("start", 7, str(run_dir), 7), ("end", 7, ret.status, 7)]
    assert run_dir == hydras[5] and run_dir.name.startswith("7_")
    hydra_ret = hydras[4]
    assert ret.status == hydra_ret.status == (
        JobStatus.COMPLETED if ends == "returning" else JobStatus.FAILED)
    if ends == "returning":
        assert ret.return_value == hydra_ret.return_value == 0.75
    else:
        assert str(ret._return_value) == str(hydra_ret._return_value) == "the task failed"
    assert ret.overrides == hydra_ret.overrides == job
    assert ret.working_dir == hydra_ret.working_dir == os.getcwd()
    assert ret.task_name == hydra_ret.task_name
    assert OmegaConf.to_yaml(ret.hydra_cfg) == OmegaConf.to_yaml(hydra_ret.hydra_cfg)
    assert OmegaConf.to_container(ret.cfg, resolve=True) == \
        OmegaConf.to_container(hydra_ret.cfg, resolve=True)


def test_a_stacks_members_have_their_hydra_files_before_they_train(sweep, root_logging,
                                                                    monkeypatch):
    """A stack stopped or killed while it trains leaves every member with the .hydra files
    that `dltrain resume` and the report read; each member then ends as a Hydra job with
    the task's value for the sweeper, and the launcher's own logging is back."""
    from hydra.types import HydraContext

    import dltrain.vectorised.train as train
    from dltrain.results import RunResult
    from hydra_plugins.dltrain_vectorised.vectorised_launcher import VectorisedLauncher

    loader, master, job = sweep
    configs = [job(num, ["data=moons", f"trainer.seed={num}", "optim.lr=0.01"])
               for num in (0, 1)]
    tasks = [VectorisedLauncher._task(c) for c in configs]
    on_disk = {}

    def train_stack(cfgs, run_dirs, **_):
        for d in run_dirs:
            on_disk[Path(d).name] = sorted(p.name for p in (Path(d) / ".hydra").iterdir())
        return [RunResult.of({"status": "completed", "test": {"accuracy": 0.5 + i / 4}})
                for i in range(len(cfgs))]

    class Task:  # TrainTask's part the launcher calls for a member
        def finish(self, run_dir, result):
            return (HydraConfig.get().job.num, Path(run_dir).name, result.summary["test"])

    monkeypatch.setattr(train, "train_stack", train_stack)
    launcher = VectorisedLauncher()
    launcher.setup(hydra_context=HydraContext(config_loader=loader, callbacks=Recorder()),
                   task_function=Task(), config=master)
    returns = launcher._stack([0, 1], configs, tasks, 1)
    names = [Path(d).name for _, d in tasks]
    assert on_disk == {name: ["config.yaml", "hydra.yaml", "overrides.yaml"] for name in names}
    assert [returns[i].return_value for i in (0, 1)] == [
        (0, names[0], {"accuracy": 0.5}), (1, names[1], {"accuracy": 0.75})]
    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger().handlers)
