"""model=rnn and data=adding as the command line runs them: listed, refused in one sentence,
a forecast of data=sine_series (the rnn_memory experiment's sweep runs with the other lectures'
experiments in tests/cli/test_experiments.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import run_cli, run_cli_batch

pytestmark = pytest.mark.e2e

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # tiny models; the cores are shared


def test_list_shows_the_family_and_the_data(tmp_path):
    models = run_cli("list", "model", cwd=tmp_path)
    assert models.returncode == 0
    assert "rnn          Recurrent network (PyTorch's nn.LSTM / nn.GRU / nn.RNN)" in models.stdout
    data = run_cli("list", "data", cwd=tmp_path)
    assert data.returncode == 0
    assert "adding" in data.stdout and "sine_series" in data.stdout


def test_vectors_and_a_bidirectional_language_model_are_refused_before_training(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("to be or not to be, that is the question\n" * 50, encoding="utf-8")
    points, lm = run_cli_batch([
        ["data=moons", "model=rnn", "logger=none"],
        ["data=text", f"data.path={text}", "data.block_size=16", "model=rnn",
         "model.bidirectional=true", "logger=none"]], cwd=tmp_path, env=ONE_THREAD)
    assert points.returncode == 2
    assert ("dltrain: model=rnn needs sequences (signals, images read row by row, or text), but "
            "data=moons gives 2-D points; use model=mlp, or data=series or data=sine_series for "
            "a time series.") in points.stderr
    assert "Traceback" not in points.stderr
    assert lm.returncode == 2 and "Traceback" not in lm.stderr
    assert "dltrain: model.bidirectional=true would let model=rnn read the very characters it " \
           "predicts on data=text" in lm.stderr


def test_a_series_forecast_runs_from_the_command_line(tmp_path):
    proc = run_cli("data=sine_series", "data.length=800", "model=rnn", "model.hidden_size=16",
                   "model.cell=gru", "trainer=smoke", "logger=none", cwd=tmp_path, env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = next(Path(tmp_path, "outputs", "runs").glob("*/summary.json")).read_text()
    assert '"naive_rmse"' in summary and '"rmse"' in summary


def test_the_vectorised_launcher_runs_recurrent_jobs_alone_and_says_why(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "hydra/launcher=vectorised", "data=adding", "data.length=10",
                   "data.n_train=256", "model=rnn", "model.hidden_size=8", "trainer=smoke",
                   "trainer.seed=0,1", "logger=[]", f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                   env=ONE_THREAD)
    assert proc.returncode == 0, proc.stderr[-2000:]
    said = proc.stdout + proc.stderr
    assert "#0, #1 alone: model=rnn: not stacked (a recurrent net's loop over time has no " \
           "stacked form)" in said
    summaries = list(sweep.glob("*/summary.json"))
    assert len(summaries) == 2
    assert all('"completed"' in p.read_text() and '"vectorised"' not in p.read_text()
               for p in summaries)
