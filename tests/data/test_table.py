"""data=table read by its builder: file formats, columns, missing cells, one-hot, user functions."""

from __future__ import annotations

import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch

from dltrain.data import build_data
from dltrain.data.table import TABLE_KEYS, read_frame
from dltrain.errors import ConfigError


def table_cfg(**keys):
    """conf/data/table.yaml's defaults with `keys` set."""
    import yaml

    from dltrain.cli import conf_dir

    with open(f"{conf_dir()}/data/table.yaml") as f:
        base = yaml.safe_load(f)
    return {**base, **keys}


def frame(n: int = 200, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    return pd.DataFrame({
        "a": a, "b": b,
        "colour": rng.choice(["red", "green", "blue"], n),
        "species": np.where(a > 0, "setosa", "virginica"),
        "y": 2 * a - b + 0.5,
    })


def write(df: pd.DataFrame, path) -> str:
    if str(path).endswith(".parquet"):
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, sep="\t" if str(path).endswith(".tsv") else ",", index=False)
    return str(path)


def test_conf_names_every_key_the_reader_knows():
    assert set(table_cfg()) == set(TABLE_KEYS)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".parquet"])
def test_each_format_reads_the_same_table(tmp_path, suffix):
    df = frame()
    path = write(df, tmp_path / f"t{suffix}")
    data = build_data(table_cfg(path=path, target="y", features=["a", "b"]))
    assert data.spec.task == "regression" and data.spec.input_shape == (2,)
    assert data.facts["why"] == "regression: column 'y' holds floats"
    # the test split, un-normalised, is rows of the file: y = 2a - b + 0.5 holds on it
    std, mean = torch.tensor(data.norm["std"]), torch.tensor(data.norm["mean"])
    x = data.test.x * std + mean
    y = data.target_scale.restore(data.test.y)[:, 0]
    assert torch.allclose(y, 2 * x[:, 0] - x[:, 1] + 0.5, atol=1e-4)
    assert len(data.train) + len(data.val) + len(data.test) == len(df)


def test_string_target_is_classification_with_names(tmp_path):
    path = write(frame(), tmp_path / "t.csv")
    data = build_data(table_cfg(path=path, target="species", features=["a", "b"]))
    assert data.spec.task == "classification"
    assert data.spec.class_names == ("setosa", "virginica")
    assert data.facts["why"] == "classification: column 'species' holds 2 distinct strings"
    x = data.train.x[:, 0] * data.norm["std"][0] + data.norm["mean"][0]
    assert torch.equal(data.train.y, (x <= 0).long())  # setosa (0) where a > 0


def test_task_override(tmp_path):
    df = pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100) % 3})
    path = write(df, tmp_path / "t.csv")
    assert build_data(table_cfg(path=path, target="y")).spec.task == "classification"
    data = build_data(table_cfg(path=path, target="y", task="regression"))
    assert data.spec.task == "regression" and data.facts["why"].startswith("regression: data.task")


def test_several_targets_are_several_outputs(tmp_path):
    df = frame()
    df["z"] = df["a"] * 100
    path = write(df, tmp_path / "t.parquet")
    data = build_data(table_cfg(path=path, target=["y", "z"], features=["a", "b"]))
    assert data.spec.num_outputs == 2 and data.target_scale.mean.shape == (1, 2)
    assert data.facts["target"] == ["y", "z"]


def test_categorical_features_one_hot_with_categories_kept(tmp_path):
    path = write(frame(), tmp_path / "t.csv")
    data = build_data(table_cfg(path=path, target="y", features=["a", "colour"]))
    assert data.facts["categories"] == {"colour": ["blue", "green", "red"]}
    assert data.facts["features"] == ["a", "colour=blue", "colour=green", "colour=red"]
    assert data.spec.input_shape == (4,)
    onehot = (data.train.x[:, 1:] * torch.tensor(data.norm["std"][1:])
              + torch.tensor(data.norm["mean"][1:]))
    assert torch.allclose(onehot.sum(1), torch.ones(len(data.train)), atol=1e-5)
    assert set(torch.round(onehot).unique().tolist()) == {0.0, 1.0}


def test_val_and_test_files_use_the_training_encoding(tmp_path):
    train = frame(200, 0)
    val, test = frame(40, 1), frame(30, 2)
    test["colour"] = "green"  # one category only: still encoded with all three
    data = build_data(table_cfg(
        path=write(train, tmp_path / "train.csv"), target="species", features=["a", "colour"],
        val_path=write(val, tmp_path / "val.csv"), test_path=write(test, tmp_path / "t.tsv")))
    assert (len(data.train), len(data.val), len(data.test)) == (200, 40, 30)
    mean, std = torch.tensor(data.norm["mean"]), torch.tensor(data.norm["std"])
    green = torch.round(data.test.x * std + mean)[:, 1:]
    assert torch.equal(green, torch.tensor([[0.0, 1.0, 0.0]]).expand(30, 3))
    test["colour"] = "purple"
    with pytest.raises(ConfigError, match="column 'colour' holds 'purple', a category the "
                                          "training table lacks"):
        build_data(table_cfg(path=write(train, tmp_path / "train.csv"), target="y",
                             test_path=write(test, tmp_path / "t.tsv")))


def test_missing_cells_refused_or_dropped(tmp_path):
    df = frame(100)
    df.loc[[3, 7, 9], "a"] = np.nan
    df.loc[[7, 20], "colour"] = None
    path = write(df, tmp_path / "gaps.csv")
    with pytest.raises(ConfigError) as err:
        build_data(table_cfg(path=path, target="y"))
    assert str(err.value) == (f"{path} has missing values (NaN or empty cells): column 'a' in "
                              "3 rows, column 'colour' in 2 rows; fill them or set "
                              "data.missing=drop to drop those rows.")
    data = build_data(table_cfg(path=path, target="y", missing="drop"))
    assert data.facts["dropped_rows"] == 4  # rows 3, 7, 9, 20
    assert len(data.train) + len(data.val) + len(data.test) == 96
    # a column that is not used may have gaps
    assert build_data(table_cfg(path=path, target="y", features=["b"])).facts["dropped_rows"] == 0


@pytest.mark.parametrize(("keys", "message"), [
    ({"target": "spceies"}, "data.target: {path} has no column 'spceies'; did you mean "
                            "'species'?"),
    ({"target": "y", "features": ["a", "colur"]}, "data.features: {path} has no column "
                                                  "'colur'; did you mean 'colour'?"),
    ({"target": "y", "features": ["a", "y"]}, "data.features: column 'y' is also data.target"),
    ({"target": None}, "data=table needs data.target=COLUMN"),
    ({"path": None}, "data=table needs data.path=FILE"),
])
def test_column_mistakes_are_one_sentence(tmp_path, keys, message):
    path = write(frame(), tmp_path / "t.csv")
    with pytest.raises(ConfigError) as err:
        build_data(table_cfg(**{"path": path, "target": "y", **keys}))
    assert str(err.value).startswith(message.format(path=path))


def test_file_mistakes_are_one_sentence(tmp_path):
    with pytest.raises(ConfigError, match=r"data.path=.*nope.csv: there is no such file\."):
        read_frame(tmp_path / "nope.csv")
    (tmp_path / "t.xlsx").write_text("x")
    with pytest.raises(ConfigError, match=r"must be \.csv, \.tsv or \.parquet \(not '\.xlsx'\)"):
        read_frame(tmp_path / "t.xlsx")
    (tmp_path / "bad.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(ConfigError, match=r"bad.parquet cannot be read as a table: "):
        read_frame(tmp_path / "bad.parquet")
    (tmp_path / "empty.csv").write_text("a,b,y\n")
    with pytest.raises(ConfigError, match=r"empty.csv holds no rows\."):
        read_frame(tmp_path / "empty.csv")
    (tmp_path / "val.csv").write_text("a,b,y\n1,2,3\n")
    with pytest.raises(ConfigError, match=r"data.val_path=.*missing.csv: there is no such"):
        build_data(table_cfg(path=str(tmp_path / "val.csv"), target="y",
                             val_path=str(tmp_path / "missing.csv")))


def test_a_single_example_class_is_refused(tmp_path):
    df = frame(50)
    df.loc[10, "species"] = "rare"
    with pytest.raises(ConfigError, match="class 'rare' has a single example"):
        build_data(table_cfg(path=write(df, tmp_path / "t.csv"), target="species"))


def test_nothing_is_written_into_the_data_folder(tmp_path):
    write(frame(), tmp_path / "t.parquet")
    before = sorted(p.name for p in tmp_path.iterdir())
    build_data(table_cfg(path=str(tmp_path / "t.parquet"), target="y"))
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --- data._target_: the user's own function ----------------------------------------------------

@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """A module `myload` in a folder on sys.path, as the current folder is for the CLI."""
    (tmp_path / "myload.py").write_text(textwrap.dedent("""
        import numpy as np
        import pandas as pd

        def table(rows, seed=0):
            rng = np.random.default_rng(seed)
            a = rng.standard_normal(rows)
            return pd.DataFrame({"a": a, "label": np.where(a > 0, "up", "down")})

        def arrays(path=None):
            x = np.random.default_rng(0).standard_normal((60, 2, 8))
            return x, x.mean(axis=(1, 2))

        def images(path=None):
            x = np.random.default_rng(0).standard_normal((40, 16, 16))
            return x, (x.mean(axis=(1, 2)) > 0).astype(np.int64) * 17  # labels 0 and 17

        def wrong():
            return 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("myload", None)


def test_user_function_returning_a_dataframe(user_module):
    data = build_data(table_cfg(_target_="myload.table", target="label", rows=80))
    assert data.spec.class_names == ("down", "up")
    assert len(data.train) + len(data.val) + len(data.test) == 80


def test_user_function_returning_arrays(user_module):
    data = build_data(table_cfg(_target_="myload.arrays"))
    assert (data.spec.kind, data.spec.input_shape, data.spec.task) == ("signal", (2, 8),
                                                                         "regression")


def test_user_function_arrays_are_decided_as_data_arrays_decides(user_module):
    # (N, 16, 16) are images and integer labels classes, however many values they span:
    # the same (x, y) is the same run through data=table or data=arrays
    data = build_data(table_cfg(_target_="myload.images"))
    assert (data.spec.kind, data.spec.input_shape) == ("image", (1, 16, 16))
    assert data.spec.task == "classification" and data.spec.class_names == ("0", "17")
    assert "16x16 images" in data.facts["kind"]


def test_user_function_keys_it_leaves_unread_are_refused(user_module, tmp_path):
    # (x, y) chose inputs and target: a data.target or data.path set beside it is read by nothing
    with pytest.raises(ConfigError, match=r"data.target=y is read by nothing: "
                                          r"data._target_=myload.arrays returned arrays"):
        build_data(table_cfg(_target_="myload.arrays", target="y"))
    with pytest.raises(ConfigError, match=r"data.val_path=v.csv is read by nothing"):
        build_data(table_cfg(_target_="myload.arrays", val_path="v.csv"))
    # the function takes `path`: handed to it, not refused
    assert build_data(table_cfg(_target_="myload.arrays", path="x.npz")).spec.kind == "signal"
    with pytest.raises(ConfigError, match=r"data.path=t.csv is read by nothing: "
                                          r"data._target_=myload.table returned the table"):
        build_data(table_cfg(_target_="myload.table", target="label", rows=80, path="t.csv"))


def test_several_targets_must_be_numbers(tmp_path):
    path = write(frame(), tmp_path / "t.csv")
    with pytest.raises(ConfigError, match=r"column 'species' holds text, but several "
                                          "target columns are regression outputs"):
        build_data(table_cfg(path=path, target=["y", "species"]))


def test_user_function_mistakes(user_module):
    with pytest.raises(ConfigError, match=r"myload\.wrong\(\) returned int; data\._target_ must "
                                          "return a pandas DataFrame or a tuple"):
        build_data(table_cfg(_target_="myload.wrong"))
    with pytest.raises(ConfigError, match="no module named 'nomodule'"):
        build_data(table_cfg(_target_="nomodule.load"))
    with pytest.raises(ConfigError, match=r"myload has no function 'tabel'; did you mean "
                                          r"myload\.table\?"):
        build_data(table_cfg(_target_="myload.tabel"))
    with pytest.raises(ConfigError, match=r"myload.table\(rows, seed=0\) cannot be called"):
        build_data(table_cfg(_target_="myload.table", target="label"))  # no `rows`
    # a key added to the node (+data.foo=3) that the function does not take is not dropped
    with pytest.raises(ConfigError, match=r"myload.table\(rows, seed=0\) cannot be called"):
        build_data(table_cfg(_target_="myload.table", target="label", rows=80, foo=3))
