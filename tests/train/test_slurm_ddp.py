"""Data-parallel jobs on SLURM: the launcher's config and the environment of one task."""

import os
from unittest import mock

import pytest

from dltrain.training.distributed import from_env


def test_a_slurm_task_becomes_a_ddp_rank():
    pytest.importorskip("submitit")
    env = {"SUBMITIT_EXECUTOR": "slurm", "SLURM_JOB_ID": "123", "SLURM_NTASKS": "8",
           "SLURM_PROCID": "5", "SLURM_LOCALID": "1", "SLURM_JOB_NODELIST": "gpu[07-08]",
           "SLURM_JOB_NUM_NODES": "2", "SLURM_NODEID": "1"}
    # patch.dict puts the whole environment back afterwards, the variables the export adds too
    with mock.patch.dict(os.environ, env):
        for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
            os.environ.pop(key, None)
        d = from_env("ddp")
        assert (d.rank, d.world, d.local_rank) == (5, 8, 1)
        assert os.environ["MASTER_ADDR"] == "gpu07" and os.environ["MASTER_PORT"].isdigit()
    assert "WORLD_SIZE" not in os.environ


def test_the_ddp_launcher_config_requests_one_task_per_gpu():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    from dltrain.cli import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=submitit_slurm_ddp", "trainer=ddp",
                                          "hydra.launcher.gpus_per_node=8",
                                          "hydra.launcher.tasks_per_node=8"],
                      return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.tasks_per_node == launcher.gpus_per_node == 8
    assert cfg.trainer.strategy == "ddp"
