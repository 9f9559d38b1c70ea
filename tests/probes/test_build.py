"""Probes from the config: off by default, refused where they cannot look, and never a change
to what training does."""

from __future__ import annotations

import json

import pytest
import torch

from dltrain.choices import PROBES, looks_into_training
from dltrain.config import plain, validate
from dltrain.errors import ConfigError
from dltrain.probes.build import TABLE, chosen
from dltrain.run import run
from dltrain.training.hooks import NO_HOOKS
from tests.probes.helpers import last_weights


def test_the_probe_table_and_the_config_name_the_same_probes(make_cfg):
    assert tuple(TABLE) == tuple(PROBES)
    assert chosen(make_cfg()) == []
    assert chosen(make_cfg("probe=[gradients,activations]")) == ["gradients", "activations"]


def test_a_probe_looks_only_at_the_end_with_its_own_options(make_cfg):
    # the options choices.PROBES names are the probe's own, and the defaults look into training
    for name, at_end in PROBES.items():
        options = make_cfg(f"probe=[{name}]").probe[name]
        assert set(at_end or {}) <= set(options), name
        assert looks_into_training(name, options)
    assert not looks_into_training("fit", make_cfg("probe=[fit]", "probe.fit.images=false")
                                   .probe.fit)


def test_without_probes_the_loop_gets_no_hooks(make_cfg, tmp_path):
    from dltrain.probes.build import build_probes
    from dltrain.run import build_job

    config = plain(make_cfg("data=moons"))
    job = build_job(config, torch.device("cpu"))
    assert build_probes(config, job, None, tmp_path) is NO_HOOKS
    config = plain(make_cfg("data=moons", "probe=[activations]"))
    assert build_probes(config, job, None, tmp_path, main=False) is NO_HOOKS  # DDP: rank 0 only


@pytest.mark.parametrize(("overrides", "message"), [
    (["probe=[landscape]", "probe.landscape.resolution=4"],
     "probe.landscape.resolution=4 must be an odd whole number >= 3"),
    (["probe.every=0"], "probe.every=0 must be a whole number >= 1"),
    (["+probe.fitt={}"], "probe.fitt is not a probe; did you mean fit?"),
    (["probe=[landscape]", "probe.landscape.line=[1,0]"], "must be a pair [low, high]"),
])
def test_bad_probe_settings_are_refused_in_one_sentence(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?")):
        validate(make_cfg(*overrides))


@pytest.mark.parametrize(("overrides", "message"), [
    (["data=sine", "probe=[boundary]"], "probe=[boundary] draws the decision regions"),
    (["data=moons", "probe=[fit]"], "probe=[fit] draws a 1-D regression"),
    (["data=moons", "probe=[samples]"], "probe=[samples] writes text with a language model"),
])
def test_a_probe_that_cannot_look_at_the_data_stops_the_run_before_training(
        make_cfg, tmp_path, overrides, message):
    result = run(make_cfg(*overrides, "trainer=smoke", "logger=none"), tmp_path)
    assert result.exit_code == 2 and result.summary["error"].startswith(message)
    assert result.summary.get("steps") is None


def train(make_cfg, run_dir, *overrides: str):
    result = run(make_cfg("trainer.deterministic=true", "trainer=smoke", "logger=none",
                          *overrides), run_dir)
    assert result.status == "completed"
    return last_weights(run_dir), json.loads((run_dir / "summary.json").read_text())


@pytest.mark.parametrize("overrides", [
    ["data=moons", "reg=[dropout]", "model.width=32",
     "probe=[activations,gradients,landscape,boundary]", "probe.every=3",
     "probe.landscape.resolution=3", "probe.boundary.resolution=10"],
    ["data=sine", "reg=[dropout]", "model.width=32", "probe=[fit]", "probe.every=3"],
])
def test_probes_do_not_change_training_by_a_bit(make_cfg, tmp_path, overrides):
    plain = [o for o in overrides if not o.startswith("probe")]
    w_off, s_off = train(make_cfg, tmp_path / "off", *plain)
    w_on, s_on = train(make_cfg, tmp_path / "on", *overrides)
    assert all(torch.equal(w_off[k], w_on[k]) for k in w_off)  # dropout draws the same masks
    assert s_on["test"] == s_off["test"] and s_on["val"] == s_off["val"]


def test_a_resumed_run_probes_on_and_still_draws_the_line_from_its_initial_weights(
        make_cfg, tmp_path):
    from dltrain.run import run as train_run
    from tests.train.test_resume import StopAfterSteps

    overrides = ["data=moons", "model.width=16", "trainer.deterministic=true", "logger=none",
                 "trainer.max_epochs=2", "trainer.log_every=5", "probe=[activations,landscape]",
                 "probe.every=10", "probe.landscape.resolution=3", "probe.landscape.points=3"]
    full = tmp_path / "full"
    assert train_run(make_cfg(*overrides), full).status == "completed"
    cut = tmp_path / "cut"
    assert train_run(make_cfg(*overrides), cut, stop=StopAfterSteps(15)).status == "interrupted"
    assert not (cut / "landscape.npz").exists()
    assert train_run(make_cfg(*overrides), cut, resume=True).status == "completed"
    a, b = last_weights(full), last_weights(cut)
    assert all(torch.equal(a[k], b[k]) for k in a)
    import numpy as np

    line_full = np.load(full / "landscape.npz")["line"]
    line_cut = np.load(cut / "landscape.npz")["line"]
    assert np.isfinite(line_cut).all() and np.array_equal(line_full, line_cut)
    steps = sorted({json.loads(r)["step"] for r in (cut / "metrics.jsonl").open()
                    if "probe/activations" in r})
    assert steps == list(range(0, 57, 10))  # moons: 28 steps an epoch, 56 in all
