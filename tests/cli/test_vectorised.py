"""hydra/launcher=vectorised through the real `dltrain` command: one stack, jobs that run
alone and say why, every member's run directory as a run's, the report and the HParams tab."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
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
            "step, which members cannot share") in out

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
