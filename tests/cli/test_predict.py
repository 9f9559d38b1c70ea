"""`dltrain predict` as the console script runs: a table run's test file in, its test mse
back out of the written file; a bad input is exit 2 with one sentence; --help is light."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import run_cli
from tests.use.predict_runs import regression_table, summary, train

pytestmark = pytest.mark.e2e


def test_predict_writes_the_runs_test_predictions_and_refuses_what_does_not_fit(tmp_path):
    regression_table(600, 0).to_csv(tmp_path / "train.csv", index=False)
    regression_table(200, 1).to_csv(tmp_path / "test.csv", index=False)
    run_dir = train(tmp_path / "run", "data=table", f"data.path={tmp_path}/train.csv",
                    f"data.test_path={tmp_path}/test.csv", "data.target=y",
                    "data.features=[a,b,colour]")
    proc = run_cli("predict", str(run_dir), "test.csv", "--out", "out/pred.csv", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "wrote 200 rows of predictions to out/pred.csv (best.pt)"
    written = pd.read_csv(tmp_path / "out" / "pred.csv")
    mse = float(np.mean((written["y"] - written["pred_y"]) ** 2))
    assert mse == pytest.approx(summary(run_dir)["test"]["mse"], rel=1e-6)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["pred.csv"]  # no temporary left

    pd.read_csv(tmp_path / "test.csv").drop(columns=["colour"]).to_csv(
        tmp_path / "no_colour.csv", index=False)
    proc = run_cli("predict", str(run_dir), "no_colour.csv", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("dltrain: no_colour.csv has no column 'colour'; the run reads a "
                           "table with the columns a, b, colour, text column 'colour' (blue, "
                           "green, red).\n")


def test_predict_help_answers_without_torch(tmp_path):
    code = ("import sys\nfrom dltrain.cli import main\n"
            "try:\n    main(['predict', '--help'])\nexcept SystemExit as e:\n    code = e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.stdout.strip().splitlines()[-1] == "NO-TORCH 0", proc.stdout + proc.stderr
    assert "usage: dltrain predict [-h] [--out OUT] [--batch-size N]" in proc.stdout
    assert "--every-window" in proc.stdout and "--temperature" in proc.stdout
    # a missing argument: argparse's usage line and exit 2
    proc = run_cli("predict", "only_a_run", cwd=tmp_path)
    assert proc.returncode == 2 and "the following arguments are required: INPUT" in proc.stderr
