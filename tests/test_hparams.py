"""A run's hyperparameters as flat pairs, and which runs are one configuration
(dltrain/hparams.py)."""

from __future__ import annotations

from omegaconf import OmegaConf

from dltrain.hparams import SEED_KEYS, flat_hparams, session_group


def test_runs_that_differ_only_in_the_seed_share_a_session_group():
    run = {"optim.lr": 0.01, "trainer.seed": 0, "model.hidden": "None"}
    assert session_group(run) == session_group({**run, "trainer.seed": 7})
    assert session_group(run) != session_group({**run, "optim.lr": 0.1})
    assert SEED_KEYS == ("trainer.seed",)


def test_every_leaf_of_a_config_is_a_dotted_key_and_lists_are_text():
    cfg = {"optim": {"name": "sgd", "lr": 0.1}, "model": {"hidden": [64, 32], "norm": None},
           "trainer": {"seed": 3, "compile": False}, "_private": {"x": 1}}
    expected = {"optim.name": "sgd", "optim.lr": 0.1, "model.hidden": "[64, 32]",
                "model.norm": "None", "trainer.seed": 3, "trainer.compile": False}
    assert flat_hparams(cfg) == expected
    # a DictConfig is resolved first: the values the run used
    node = OmegaConf.create({**cfg, "data": {"n": 4, "m": "${data.n}"}})
    assert flat_hparams(node) == {**expected, "data.n": 4, "data.m": 4}
