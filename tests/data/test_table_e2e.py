"""data=table through the real `dltrain` command: a learned linear target, string classes, the
bad-data refusals (exit 2, one sentence), missing rows dropped, one-hot columns, a boundary
probe, the vectorised launcher and a user's own loading function."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.conftest import run_cli, run_cli_batch

# enough training for a few-feature table in seconds
FAST = ("trainer=smoke", "trainer.max_epochs=30", "trainer.max_steps=300",
        "trainer.val_every=100", "optim.lr=0.01", "model.hidden=[32]")


def linear(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 3))
    y = 1.5 * x[:, 0] - 2.0 * x[:, 1] + 0.5 * x[:, 2] + 10.0 + 0.05 * rng.standard_normal(n)
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "y": y})


def moons(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    t = np.pi * rng.random(n)
    label = rng.integers(0, 2, n)
    x = np.where(label[:, None] == 0, np.stack([np.cos(t), np.sin(t)], 1),
                 np.stack([1 - np.cos(t), 0.5 - np.sin(t)], 1))
    x = x + 0.1 * rng.standard_normal((n, 2))
    return pd.DataFrame({"x1": x[:, 0], "x2": x[:, 1],
                         "shape": np.where(label == 0, "upper", "lower")})


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.mark.e2e
def test_a_linear_target_is_learned_to_r2_above_095(tmp_path):
    linear(1500, 0).to_csv(tmp_path / "train.csv", index=False)
    test = linear(400, 1)
    test.to_csv(tmp_path / "test.tsv", sep="\t", index=False)
    proc = run_cli("data=table", "data.path=train.csv", "data.test_path=test.tsv",
                   "data.target=y", *FAST, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    first = (tmp_path / "run" / "train.log").read_text().splitlines()[0]
    assert "table: regression: column 'y' holds floats, input (3,), 1 outputs" in first
    result = summary(tmp_path / "run")
    assert result["data"]["why"] == "regression: column 'y' holds floats"
    # R² from the reported test mse (in the data's units) and the test file's own variance
    mse = result["test"]["mse"]
    r2 = 1 - mse / np.var(test["y"].to_numpy())
    assert r2 > 0.95, result["test"]
    assert result["test"]["r2"] == pytest.approx(r2, abs=1e-3)  # the reported R² agrees
    # the target statistics travel with the checkpoint (predictions come back in data units)
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["norm"]["target"]["mean"][0][0] == pytest.approx(10.0, abs=0.3)


@pytest.mark.e2e
def test_the_fit_probe_draws_a_one_feature_table_in_its_own_units(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 3.0, 800)
    y = 100.0 + 20.0 * np.sin(2.0 * x) + 0.5 * rng.standard_normal(800)  # far from 0 and 1
    pd.DataFrame({"depth": x, "temperature": y}).to_csv(tmp_path / "t.csv", index=False)
    proc = run_cli("data=table", "data.path=t.csv", "data.target=temperature",
                   "probe=[fit]", "probe.fit.images=false", *FAST, "hydra.run.dir=run",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    fit = np.load(tmp_path / "run" / "fit.npz")
    # the training points and the curve are drawn in degrees, over the file's depths
    assert fit["train_y"].mean() == pytest.approx(100.0, abs=2.0)
    assert fit["x"].min() == pytest.approx(x.min(), abs=0.05)
    assert fit["pred"].min() > 70.0 and fit["pred"].max() < 130.0
    # its test mse is the run's, in the same units
    test = summary(tmp_path / "run")["test"]
    assert float(fit["test_mse"]) == pytest.approx(test["mse"], rel=1e-3)
    assert test["mse"] < 40.0  # well below the target's variance (about 200)


@pytest.mark.e2e
def test_string_classes_on_a_table_with_a_boundary_probe(tmp_path):
    moons(1200, 0).to_parquet(tmp_path / "moons.parquet", index=False)
    proc = run_cli("data=table", "data.path=moons.parquet", "data.target=shape",
                   "probe=[boundary]", "probe.boundary.images=false", *FAST,
                   "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = tmp_path / "run"
    result = summary(run)
    assert result["task"] == "classification" and result["test"]["accuracy"] > 0.9
    assert result["data"]["why"] == "classification: column 'shape' holds 2 distinct strings"
    best = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    assert best["spec"]["class_names"] == ["lower", "upper"]
    assert (run / "boundary.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.e2e
def test_missing_rows_dropped_and_categories_one_hot(tmp_path):
    df = linear(600, 2)
    df["site"] = np.random.default_rng(3).choice(["north", "south"], len(df))
    df.loc[df["site"] == "south", "y"] += 5.0  # the category matters
    df.loc[[5, 50, 500], "b"] = np.nan
    df.to_csv(tmp_path / "sites.csv", index=False)
    args = ("data=table", "data.path=sites.csv", "data.target=y", "trainer=smoke",
            "hydra.run.dir=run")
    refused = run_cli(*args, cwd=tmp_path)
    assert refused.returncode == 2
    assert ("dltrain: sites.csv has missing values (NaN or empty cells): column 'b' in 3 "
            "rows; fill them or set data.missing=drop to drop those rows.") in refused.stderr
    proc = run_cli(*args, "data.missing=drop", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = summary(tmp_path / "run")
    assert result["data"]["dropped_rows"] == 3
    assert result["data"]["categories"] == {"site": ["north", "south"]}
    assert result["data"]["features"] == ["a", "b", "c", "site=north", "site=south"]
    # the checkpoint carries them, so that new rows can be encoded the same way
    best = torch.load(tmp_path / "run" / "checkpoints" / "best.pt", weights_only=True)
    assert best["data"]["categories"] == {"site": ["north", "south"]}
    assert "dropped 3 rows with missing values" in proc.stdout + proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "sites.csv"]


BAD_DATA = [
    (["data.path=nope.csv", "data.target=y"], "data.path=nope.csv: there is no such file."),
    (["data.path=t.csv", "data.target=Y"], "data.target: t.csv has no column 'Y'; did you "
                                           "mean 'y'?"),
    (["data.path=t.csv", "data.target=y", "data.features=[a,y]"],
     "data.features: column 'y' is also data.target; a column cannot be both"),
    (["data.path=empty.csv", "data.target=y"], "data.path=empty.csv holds no rows."),
    (["data.path=bad.parquet", "data.target=y"], "data.path=bad.parquet cannot be read as a "
                                                 "table:"),
    (["data.path=t.csv", "data.target=label"], "class 'rare' has a single example"),
    (["data.path=t.csv"], "data=table needs data.target=COLUMN"),
    (["data.path=t.csv", "data.target=y", "data.task=regresion"],
     "data.task=regresion must be one of: auto, classification, regression; did you mean "
     "regression?"),
]


@pytest.fixture(scope="module")
def bad_data(tmp_path_factory) -> list:
    """Each case of BAD_DATA, one `dltrain` command each, in one process."""
    tmp_path = tmp_path_factory.mktemp("bad_data")
    df = linear(40, 0)
    df["label"] = ["a"] * 20 + ["b"] * 19 + ["rare"]
    df.to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "empty.csv").write_text("a,b,y\n")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 this is not parquet")
    return run_cli_batch([["data=table", *args, "trainer=smoke"] for args, _ in BAD_DATA],
                         cwd=tmp_path)


@pytest.mark.e2e
@pytest.mark.parametrize("case", range(len(BAD_DATA)),
                         ids=[message[:40] for _, message in BAD_DATA])
def test_bad_data_is_one_sentence_and_exit_2(bad_data, case):
    proc, message = bad_data[case], BAD_DATA[case][1]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.e2e
def test_vectorised_launcher_stacks_seeds_on_a_table(tmp_path):
    linear(500, 0).to_csv(tmp_path / "t.csv", index=False)
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "hydra/launcher=vectorised", "data=table", "data.path=t.csv",
                   "data.target=y", "model.hidden=[16]", "trainer=smoke", "trainer.seed=0,1",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout + proc.stderr
    assert "stack 1: #0, #1 (2 jobs differing in trainer.seed)" in out
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    results = [summary(job) for job in jobs]
    assert [r["vectorised"]["members"] for r in results] == [2, 2]
    assert all(r["status"] == "completed" and r["task"] == "regression" for r in results)
    assert results[0]["test"]["mse"] != results[1]["test"]["mse"]  # two seeds, two models


@pytest.mark.e2e
def test_a_users_own_loading_function_in_the_current_folder(tmp_path):
    (tmp_path / "mydata.py").write_text(textwrap.dedent("""
        import numpy as np
        import pandas as pd

        def load(rows, seed=0):
            rng = np.random.default_rng(seed)
            x = rng.standard_normal((rows, 2))
            return pd.DataFrame({"u": x[:, 0], "v": x[:, 1], "y": 3 * x[:, 0] - x[:, 1]})
    """))
    proc = run_cli("data=table", "data._target_=mydata.load", "+data.rows=800",
                   "data.target=y", *FAST, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = summary(tmp_path / "run")
    assert result["data"]["features"] == ["u", "v"]
    assert result["test"]["mse"] < 0.05 * 10  # var(y) = 9 + 1: R² > 0.95
