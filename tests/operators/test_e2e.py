"""Operator learning through the real `dltrain` command: FNO on darcy and burgers_operator,
DeepONet on burgers_operator, an FNO on the user's own field arrays, and what is refused."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dltrain.run import run
from tests.conftest import run_cli

TINY = ["data.n_train=40", "data.n_test=6", "trainer=smoke", "loss=rel_l2", "optim.lr=0.01",
        "data.batch_size=4"]
TINY_FNO = ["model.width=8", "model.modes=4", "model.layers=2"]


def smoke(tmp_path, *args: str) -> dict:
    run_dir = tmp_path / "run"
    proc = run_cli(*TINY, f"data.root={tmp_path / 'cache'}", f"hydra.run.dir={run_dir}",
                   *args, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((run_dir / "summary.json").read_text())


@pytest.mark.e2e
def test_fno_on_darcy_with_the_field_probe(tmp_path):
    summary = smoke(tmp_path, "data=darcy", "model=fno", *TINY_FNO, "data.resolution=16",
                    "data.test_resolution=32", "probe=[field]", "probe.every=100")
    assert summary["status"] == "completed" and summary["options"]["loss"] == "rel_l2"
    # trained: better than predicting zero (rel_l2 1) on the test split at both resolutions
    assert summary["test"]["rel_l2"] < 0.9
    finer = summary["test_resolutions"]["32x32"]
    assert set(finer) >= {"loss", "rel_l2", "mse", "max_error"} and finer["rel_l2"] < 0.9
    assert summary["data"]["generation"]["generated_s"] > 0
    run_dir = tmp_path / "run"
    png = (run_dir / "field.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("test@32x32/rel_l2" in point for point in logged)


@pytest.mark.e2e
@pytest.mark.parametrize("model", ["fno", "deeponet"])
def test_operators_on_burgers(tmp_path, model):
    sizes = TINY_FNO if model == "fno" else ["model.width=16", "model.depth=2",
                                             "model.basis=8"]
    summary = smoke(tmp_path, "data=burgers_operator", f"model={model}", *sizes,
                    "data.resolution=32", "data.test_resolution=64", "logger=[]")
    assert summary["test"]["rel_l2"] < 1.0
    assert math.isfinite(summary["test_resolutions"]["64"]["rel_l2"])


def test_fno_trains_on_the_users_own_field_arrays(make_cfg, tmp_path):
    # a smoothing map of 2-channel 16x16 fields to 1-channel fields, from an .npz
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2, 16, 16)).astype(np.float32)
    y = (x[:, :1] + np.roll(x[:, 1:], 1, axis=-1)).astype(np.float32)
    np.savez(tmp_path / "fields.npz", x=x, y=y)
    cfg = make_cfg("data=arrays", f"data.path={tmp_path / 'fields.npz'}", "model=fno",
                   *TINY_FNO, "trainer=smoke", "logger=[]", "loss=rel_l2", "optim.lr=0.01",
                   "data.batch_size=4")
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed", result.summary.get("error")
    assert result.summary["test"]["rel_l2"] < 1.0


def test_modes_above_nyquist_are_refused_before_training(make_cfg, tmp_path):
    # (in-process: the command's exit 2 for a refusal is tests/cli/test_bad_input_e2e.py's)
    result = run(make_cfg("data=darcy", "model=fno", "data.resolution=16", "model.modes=9",
                          "data.n_train=20", "data.n_test=4", f"data.root={tmp_path}",
                          "trainer=smoke", "logger=[]"), tmp_path / "run")
    assert result.exit_code == 2 and result.status == "failed"
    assert result.summary["error"] == (
        "model.modes=9 is above the Nyquist limit of data=darcy's 16x16 grid (8 modes per "
        "dimension); use model.modes=8 or less, or a finer data.resolution.")


def test_an_fno_on_a_table_is_refused_before_training(make_cfg, tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("a,b,y\n" + "".join(f"{i},{i % 3},{i * 0.5}\n" for i in range(40)))
    result = run(make_cfg("data=table", f"data.path={table}", "data.target=y", "model=fno",
                          "trainer=smoke", "logger=[]"), tmp_path / "run")
    assert result.exit_code == 2 and result.status == "failed"
    assert result.summary["error"] == (
        "model=fno needs a field-to-field map: (C, L) signals or (C, H, W) images with a "
        "target of the same size (data=darcy, data=burgers_operator, or data=arrays of "
        "fields), but data=table gives 2-D points with 1 regression output a sample; use "
        "model=mlp or model=cnn.")
