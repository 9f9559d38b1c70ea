"""The model families through the real `dltrain` command."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def test_cnn_with_adam_trains_and_prints_its_layers(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("model=cnn", "optim=adam", "trainer=smoke", "logger=none",
                   f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert summary["options"]["model"] == "cnn" and summary["params"] == 20_490
    # the layer table, printed before training starts
    assert proc.stdout.index("features.0.conv") < proc.stdout.index("step 20")
    assert "32 x 7 x 7" in proc.stdout and "20,490" in proc.stdout


def test_a_cnn_on_points_exits_2_with_one_sentence(tmp_path):
    proc = run_cli("model=cnn", "data=moons", f"hydra.run.dir={tmp_path / 'run'}",
                   cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("dltrain: model=cnn needs images or signals, but data=moons "
                                   "gives 2-D points; use model=mlp or model=resnet.")
    assert "Traceback" not in proc.stdout + proc.stderr
