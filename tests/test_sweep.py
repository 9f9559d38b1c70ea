"""Directory names, the value handed to a sweeper, and the sweep configs (Optuna, launchers)."""

from __future__ import annotations

import math
import re

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import MissingConfigException
from omegaconf import OmegaConf, read_write

from dltrain.cli import CONFIG_NAME, conf_dir
from dltrain.cli.preflight import explain, preflight
from dltrain.errors import ConfigError
from dltrain.io import NAME_LIMIT, safe_name
from dltrain.sweep import job_dir_name, sweeper_value

STAMP = r"\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d_[a-z0-9]{4}"


def hydra_cfg(*overrides: str):
    """The composed config with its hydra node, as a job sees it (hydra.job.num = 0)."""
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
        cfg = compose(CONFIG_NAME, overrides=list(overrides), return_hydra_config=True)
    with read_write(cfg.hydra.job):
        cfg.hydra.job.num = 0  # a launcher numbers the jobs
    return cfg


def test_runs_and_sweeps_started_in_the_same_second_get_their_own_directories():
    a, b = hydra_cfg(), hydra_cfg()
    dirs = [str(c.hydra.run.dir) for c in (a, b)] + [str(c.hydra.sweep.dir) for c in (a, b)]
    assert re.fullmatch(rf"outputs/runs/{STAMP}", dirs[0]), dirs[0]
    assert re.fullmatch(rf"outputs/sweeps/{STAMP}", dirs[2]), dirs[2]
    assert dirs[0] != dirs[1] and dirs[2] != dirs[3]
    # one value per composed config: every job of a sweep agrees on its directory
    assert str(a.hydra.sweep.dir) == dirs[2]


def test_a_job_directory_says_its_overrides():
    cfg = hydra_cfg("optim.lr=0.01", "data=moons", "trainer.seed=1")
    assert str(cfg.hydra.sweep.subdir) == "0_data=moons,optim.lr=0.01,trainer.seed=1"
    assert str(hydra_cfg().hydra.sweep.subdir) == "0"


@pytest.mark.parametrize(("overrides", "name"), [
    ("data.root=/tmp/x y", "3_data.root=_tmp_x_y"),
    ("a=b:c,d='e'", "3_a=b_c,d=_e_"),
    ("model.hidden=[64,64],optim.lr=0.1", "3_model.hidden=[64,64],optim.lr=0.1"),
    ("", "3"),
])
def test_job_directory_names_are_one_safe_path_component(overrides, name):
    assert job_dir_name(3, overrides) == name


def test_long_names_are_cut_and_stay_apart():
    a, b = "optim.lr=0.1," + "x" * 300, "optim.lr=0.2," + "x" * 300
    assert len(safe_name(a)) == NAME_LIMIT and safe_name(a) != safe_name(b)
    assert safe_name(a).startswith("optim.lr=0.1,xxx")


def completed(value: float, mode: str) -> dict:
    return {"status": "completed", "objective": value, "best": {"mode": mode}}


@pytest.mark.parametrize(("summary", "direction", "expected"), [
    (completed(0.9, "max"), None, 0.9),  # a grid sweep: the objective as it is
    (completed(0.9, "max"), "maximize", 0.9),  # accuracy, maximised
    (completed(0.9, "max"), "minimize", -0.9),
    (completed(0.2, "min"), "minimize", 0.2),  # a loss, minimised
    (completed(0.2, "min"), "maximize", -0.2),
    (completed(0.2, "min"), "Direction.maximize", -0.2),  # the plugin's enum, as text
    ({"status": "diverged", "error": "nan"}, "maximize", -math.inf),  # the worst there is
    ({"status": "failed"}, "minimize", math.inf),
    ({"status": "failed"}, None, None),
    (completed(math.nan, "min"), "minimize", math.inf),
])
def test_the_sweeper_gets_the_objective_facing_its_direction(summary, direction, expected):
    assert sweeper_value(summary, direction) == expected


def test_preflight_checks_a_search_space_from_the_config_without_m():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    preflight(["hparams_search=optuna", "hydra.sweeper.n_trials=4", "trainer=smoke"], False)
    preflight(["hparams_search=optuna", "optim.lr=tag(log,interval(1e-5,1e-2))"], False)


@pytest.mark.parametrize(("overrides", "message"), [
    (["optim.lrr=tag(log,interval(1e-4,1e-1))"], "did you mean optim.lr?"),
    (["optim.lr=interval(0,0.1)"], "optim.lr=0.0 must be a number > 0."),  # an end
    (["model.width=choice(16,0)"], "model.width=0 must be a whole number >= 1."),
    (["hydra.sweeper.direction=[maximize,minimize]"], "must be maximize or minimize"),
])
def test_preflight_answers_for_a_bad_search_space(overrides, message):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    with pytest.raises(ConfigError) as err:
        preflight(["hparams_search=optuna", *overrides], False)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_missing_plugin_is_named_with_the_extra_that_installs_it():
    err = MissingConfigException("In 'hparams_search/optuna': Could not find "
                                 "'hydra/sweeper/optuna'", missing_cfg_file="hydra/sweeper/optuna")
    message = explain(err, ["hparams_search=optuna"], conf_dir(), lambda ov: None)
    assert message == ("hydra/sweeper=optuna needs Hydra's Optuna sweeper plugin, which is not "
                       "installed: pip install 'dltrain[sweep]'.")


def test_the_optuna_search_stores_its_study_in_the_sweep_directory():
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    cfg = hydra_cfg("hparams_search=optuna")
    sweeper = cfg.hydra.sweeper
    assert sweeper._target_.endswith("OptunaSweeper") and str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    assert sweeper.storage == f"sqlite:///{cfg.hydra.sweep.dir}/optuna.db"
    assert sweeper.direction == "maximize" and sweeper.study_name == "dltrain"
    assert set(sweeper.params) == {"optim.lr", "model.width", "model.depth"}
    # every trial has hparams_search=optuna among its overrides: not in its directory's name
    assert "hparams_search" in cfg.hydra.job.config.override_dirname.exclude_keys


def test_joblib_launcher_composes():
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    launcher = hydra_cfg("hydra/launcher=joblib", "hydra.launcher.n_jobs=2").hydra.launcher
    assert launcher._target_.endswith("JoblibLauncher") and launcher.n_jobs == 2


def test_slurm_launcher_composes_with_the_settings_a_cluster_needs():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg = hydra_cfg("hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
                    "hydra.launcher.gpus_per_node=1", "hydra.launcher.timeout_min=120",
                    "trainer.device=cuda")
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert (launcher["partition"], launcher["gpus_per_node"], launcher["timeout_min"]) == \
        ("gpu", 1, 120)
    # submitit's own files land inside the sweep directory, next to the jobs
    assert launcher["submitit_folder"] == f"{cfg.hydra.sweep.dir}/.submitit/%j"
    preflight(["hydra/launcher=submitit_slurm", "hydra.launcher.partition=gpu",
               "optim.lr=0.001,0.01"], True)
