"""`dltrain predict` (through the command's own entry point, in-process) and `dltrain.load`
on every kind of input a run reads, checked against the run's own test metrics and against
the model called by hand."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import dltrain
from dltrain.cli import main
from dltrain.data.text import encode
from tests.use.predict_runs import (
    arrays_run,
    images_run,
    series_frame,
    series_run,
    stripes,
    summary,
    table_runs,
    text_run,
)


def predict(capsys, *args) -> tuple[int, str, str]:
    """`dltrain predict ARGS` as the console script runs it: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as ended:
        main(["predict", *map(str, args)])
    out = capsys.readouterr()
    return ended.value.code, out.out, out.err


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    return table_runs(tmp_path_factory.mktemp("tables"))


@pytest.fixture(scope="module")
def arrays(tmp_path_factory):
    return arrays_run(tmp_path_factory.mktemp("arrays"))


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return images_run(tmp_path_factory.mktemp("images"))


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    return series_run(tmp_path_factory.mktemp("series"))


@pytest.fixture(scope="module")
def text(tmp_path_factory):
    return text_run(tmp_path_factory.mktemp("text"))


def by_hand(run_dir, x: np.ndarray) -> torch.Tensor:
    """The run's network on raw inputs, normalised by the checkpoint's own statistics."""
    payload = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    norm = payload["norm"]
    shape = (1, -1, *([1] * (x.ndim - 2)))
    mean = torch.tensor(norm["mean"]).reshape(shape)
    std = torch.tensor(norm["std"]).reshape(shape)
    model = dltrain.load(run_dir).model
    with torch.no_grad():
        return model((torch.from_numpy(x).float() - mean) / std)


# ---------------------------------------------------------------------------------------------
# Tables


def test_table_regression_recomputes_the_runs_test_mse(tables, tmp_path, capsys):
    run_dir = tables["regression"]
    test_file = run_dir.parent / "reg_test.csv"
    out = tmp_path / "pred.csv"
    code, said, err = predict(capsys, run_dir, test_file, "--out", out)
    assert code == 0, err
    assert f"wrote 200 rows of predictions to {out}" in said
    written = pd.read_csv(out)
    given = pd.read_csv(test_file)
    # every column of the input passes through unchanged, the prediction after them
    assert list(written.columns) == [*given.columns, "pred_y"]
    pd.testing.assert_frame_equal(written[given.columns], given)
    mse = float(np.mean((written["y"] - written["pred_y"]) ** 2))
    assert mse == pytest.approx(summary(run_dir)["test"]["mse"], rel=1e-6)

    # the Python API on the DataFrame: the same table
    m = dltrain.load(run_dir)
    frame = m.predict(given)
    pd.testing.assert_frame_equal(frame, written, check_dtype=False, rtol=1e-7)
    # in the data's units: one-hot encoded and normalised by hand, un-standardised by hand
    payload = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    onehot = np.stack([given["a"], given["b"],
                       *[(given["colour"] == c).to_numpy() for c in ("blue", "green", "red")]],
                      1).astype(np.float32)
    assert payload["data"]["features"] == ["a", "b", "colour=blue", "colour=green",
                                           "colour=red"]
    target = payload["norm"]["target"]
    hand = by_hand(run_dir, onehot)[:, 0].numpy() * target["std"][0][0] + target["mean"][0][0]
    np.testing.assert_allclose(frame["pred_y"], hand, rtol=1e-5, atol=1e-5)
    # raw arrays in, numpy out, (N,) for one output
    array = m.predict(onehot)
    assert array.shape == (200,)
    np.testing.assert_allclose(array, frame["pred_y"], rtol=1e-6)
    np.testing.assert_allclose(m.predict(torch.from_numpy(onehot)), array)
    assert m.model.training is False and m.spec.task == "regression"
    assert m.config.data.target == "y" and m.summary["status"] == "completed"


def test_table_classification_names_classes_and_probabilities(tables, tmp_path, capsys):
    run_dir = tables["classification"]
    test_file = run_dir.parent / "cls_test.parquet"
    out = tmp_path / "classes.csv"
    code, _, err = predict(capsys, run_dir, test_file, "--out", out, "--batch-size", "7")
    assert code == 0, err
    written = pd.read_csv(out)
    assert list(written.columns) == ["x1", "x2", "site", "shape", "tag", "pred_shape",
                                     "p_lower", "p_upper"]
    p = written[["p_lower", "p_upper"]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    assert (written["pred_shape"] == np.array(["lower", "upper"])[p.argmax(axis=1)]).all()
    accuracy = float((written["pred_shape"] == written["shape"]).mean())
    assert accuracy == pytest.approx(summary(run_dir)["test"]["accuracy"], abs=1e-12)
    # the same rows as Parquet and as .npz
    code, _, err = predict(capsys, run_dir, test_file, "--out", tmp_path / "classes.parquet")
    assert code == 0, err
    # (another batch size: sums in another order, within float32's rounding)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "classes.parquet"), written,
                                  check_dtype=False, rtol=1e-6)
    code, _, err = predict(capsys, run_dir, test_file, "--out", tmp_path / "classes.npz")
    assert code == 0, err
    with np.load(tmp_path / "classes.npz", allow_pickle=False) as npz:
        np.testing.assert_allclose(npz["probabilities"], p, rtol=1e-6)
        assert list(npz["classes"]) == ["lower", "upper"]
        assert (npz["class"] == written["pred_shape"].to_numpy()).all()
        assert (npz["label"] == p.argmax(axis=1)).all()


def test_without_out_a_short_table_is_printed(tables, capsys):
    run_dir = tables["classification"]
    code, said, err = predict(capsys, run_dir, run_dir.parent / "cls_test.parquet")
    assert code == 0, err
    lines = said.splitlines()
    assert lines[0].split() == ["x1", "x2", "site", "shape", "tag", "pred_shape", "p_lower",
                                "p_upper"]
    assert len(lines) <= 25 and lines[-1] == "(200 rows; --out FILE writes them all)"


def test_inputs_that_do_not_fit_the_table_run_are_one_sentence(tables, tmp_path, capsys):
    run_dir = tables["regression"]
    good = pd.read_csv(run_dir.parent / "reg_test.csv")
    good.drop(columns=["b"]).to_csv(tmp_path / "no_b.csv", index=False)
    unseen = good.copy()
    unseen.loc[3, "colour"] = "purple"
    unseen.to_csv(tmp_path / "purple.csv", index=False)
    holes = good.copy()
    holes.loc[[1, 2], "a"] = np.nan
    holes.to_csv(tmp_path / "holes.csv", index=False)
    (tmp_path / "empty").mkdir()
    reads = "the run reads a table with the columns a, b, colour, text column 'colour' (blue"
    cases = {
        tmp_path / "no_b.csv": ["has no column 'b'", reads],
        tmp_path / "purple.csv": ["column 'colour' holds 'purple', a category the training "
                                  "table lacks (it has blue, green, red)"],
        tmp_path / "holes.csv": ["missing values", "'a' in 2 rows"],
        tmp_path / "nothing.csv": ["nothing.csv: there is no such file or folder", reads],
        tmp_path / "empty": ["is a folder", reads],
    }
    for source, expected in cases.items():
        code, said, err = predict(capsys, run_dir, source)
        assert code == 2, (source, err)
        assert err.startswith("dltrain: ") and err.count("\n") == 1, err
        for text in expected:
            assert text in err, (text, err)
        assert "Traceback" not in err and said == ""
    # a folder that is not a run, a run that does not exist, an output nobody reads
    code, _, err = predict(capsys, tmp_path / "empty", run_dir.parent / "reg_test.csv")
    assert code == 2 and "holds no checkpoint" in err
    code, _, err = predict(capsys, tmp_path / "gone", run_dir.parent / "reg_test.csv")
    assert code == 2 and "gone" in err
    code, _, err = predict(capsys, run_dir, run_dir.parent / "reg_test.csv", "--out",
                           tmp_path / "p.xlsx")
    assert code == 2 and ".csv, .tsv, .tab, .parquet, .npz" in err
    assert not (tmp_path / "p.xlsx").exists()
    code, _, err = predict(capsys, run_dir, run_dir.parent / "reg_test.csv", "--every-window")
    assert code == 2 and "--every-window is for a run of data=series" in err
    with pytest.raises(dltrain.errors.ConfigError, match="has no column 'b'"):
        dltrain.load(run_dir).predict(good.drop(columns=["b"]))


# ---------------------------------------------------------------------------------------------
# Arrays


def test_arrays_npz_npy_and_hdf5_give_the_runs_test_mse(arrays, tmp_path, capsys):
    root = arrays.parent
    code, _, err = predict(capsys, arrays, root / "test.npz", "--out", tmp_path / "p.npz")
    assert code == 0, err
    with np.load(tmp_path / "p.npz") as npz, np.load(root / "test.npz") as test:
        prediction, targets, x = npz["prediction"], test["targets"], test["inputs"]
    assert prediction.shape == (150, 2)
    mse = float(np.mean((prediction.astype(np.float64) - targets) ** 2))
    assert mse == pytest.approx(summary(arrays)["test"]["mse"], rel=1e-6)
    for other in ("test_x.npy", "test.h5"):  # x alone, or x under another key of the file
        code, _, err = predict(capsys, arrays, root / other, "--out", tmp_path / f"{other}.npz")
        assert code == 0, err
        with np.load(tmp_path / f"{other}.npz") as npz:
            np.testing.assert_array_equal(npz["prediction"], prediction)
    # as a table too (the columns of a run of vectors from arrays: pred_0, pred_1)
    code, _, err = predict(capsys, arrays, root / "test.npz", "--out", tmp_path / "p.csv")
    assert code == 0, err
    np.testing.assert_allclose(pd.read_csv(tmp_path / "p.csv")[["pred_0", "pred_1"]],
                               prediction, rtol=1e-6)
    np.testing.assert_allclose(dltrain.load(arrays).predict(x), prediction, rtol=1e-6)
    # a sample of the wrong width
    np.save(tmp_path / "wide.npy", np.zeros((4, 7), dtype=np.float32))
    code, _, err = predict(capsys, arrays, tmp_path / "wide.npy")
    assert code == 2
    assert "inputs of shape (4, 7) do not fit the model, which reads (N, 6)" in err
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f["a"], f["b"] = x, x
    code, _, err = predict(capsys, arrays, tmp_path / "two.h5")
    assert code == 2 and "has no array 'inputs'" in err


# ---------------------------------------------------------------------------------------------
# Images


def test_an_image_folder_and_a_file_are_classified_as_in_training(images, tmp_path, capsys):
    folder = images.parent / "images" / "test"
    out = tmp_path / "classes.csv"
    code, _, err = predict(capsys, images, folder, "--out", out)
    assert code == 0, err
    written = pd.read_csv(out)
    assert list(written.columns) == ["file", "pred_class", "p_horizontal", "p_vertical"]
    assert len(written) == 20 and written["file"][0] == "horizontal/00.png"
    p = written[["p_horizontal", "p_vertical"]].to_numpy()
    np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    truth = written["file"].str.split("/").str[0]
    accuracy = float((written["pred_class"] == truth).mean())
    assert accuracy == pytest.approx(summary(images)["test"]["accuracy"], abs=1e-12)
    # one file: the folder's row, and the model by hand on its pixels / 255
    one = folder / "vertical" / "03.png"
    m = dltrain.load(images)
    row = m.predict(one)
    assert row["file"].tolist() == ["03.png"]
    np.testing.assert_allclose(row[["p_horizontal", "p_vertical"]].to_numpy()[0],
                               p[written["file"] == "vertical/03.png"][0], rtol=1e-5)
    pixels = np.asarray(Image.open(one), dtype=np.float32)[None, None] / 255
    hand = torch.softmax(by_hand(images, pixels), dim=1)[0].numpy()
    np.testing.assert_allclose(row[["p_horizontal", "p_vertical"]].to_numpy()[0], hand,
                               rtol=1e-5)
    # a larger picture is resized to the run's size, as the training reader resizes
    Image.open(one).resize((24, 24)).save(tmp_path / "big.png")
    assert m.predict(tmp_path / "big.png")["pred_class"][0] in ("horizontal", "vertical")


def test_images_that_do_not_fit_are_refused(images, tmp_path, capsys):
    rng = np.random.default_rng(1)
    colour = np.stack([stripes("vertical", rng), stripes("vertical", rng),
                       np.zeros((12, 12), np.uint8)], axis=-1)
    Image.fromarray(colour, mode="RGB").save(tmp_path / "colour.png")
    code, _, err = predict(capsys, images, tmp_path / "colour.png")
    assert code == 2
    assert ("colour.png is a colour image and the model reads one channel; the run reads grey "
            "images of 12x12") in err
    # a grey picture saved as RGB is still grey: read
    grey = stripes("vertical", rng)
    Image.fromarray(np.stack([grey] * 3, -1), mode="RGB").save(tmp_path / "grey_rgb.png")
    code, _, err = predict(capsys, images, tmp_path / "grey_rgb.png")
    assert code == 0, err
    # arrays of the wrong channels
    np.save(tmp_path / "rgb.npy", np.zeros((5, 3, 12, 12), dtype=np.uint8))
    code, _, err = predict(capsys, images, tmp_path / "rgb.npy")
    assert code == 2 and "inputs of shape (5, 3, 12, 12) do not fit the model, which reads " \
                         "(N, 1, 12, 12)" in err
    (tmp_path / "broken.png").write_bytes(b"not a png")
    code, _, err = predict(capsys, images, tmp_path / "broken.png")
    assert code == 2 and "is not a readable image" in err


# ---------------------------------------------------------------------------------------------
# A series


def test_a_series_forecast_after_every_window_gives_the_runs_test_mse(series, tmp_path,
                                                                     capsys):
    test_file = series.parent / "test.csv"
    out = tmp_path / "every.csv"
    code, _, err = predict(capsys, series, test_file, "--every-window", "--out", out)
    assert code == 0, err
    written = pd.read_csv(out)
    assert len(written) == 80 and written[["time", "load", "temp"]].equals(
        pd.read_csv(test_file))
    assert written["pred_load+1"][:11].isna().all() and written["pred_load+1"][11:].notna().all()
    # row e's forecast h steps ahead against row e + h: the test windows of training
    errors = [written[f"pred_{c}+{h}"][11:80 - h].to_numpy()
              - written[c][11 + h:80].to_numpy()
              for c in ("load", "temp") for h in (1, 2, 3)]
    ends = np.arange(11, 80 - 3)  # windows with their whole horizon inside the file
    mse = float(np.mean([e[:len(ends)] ** 2 for e in errors]))
    assert mse == pytest.approx(summary(series)["test"]["mse"], rel=1e-6)
    # the default: what comes after the file, from its last window
    code, _, err = predict(capsys, series, test_file, "--out", tmp_path / "next.csv")
    assert code == 0, err
    ahead = pd.read_csv(tmp_path / "next.csv")
    assert ahead["step"].tolist() == [1, 2, 3]
    last = written.iloc[-1]
    np.testing.assert_allclose(ahead["pred_load"], [last[f"pred_load+{h}"] for h in (1, 2, 3)],
                               rtol=1e-6)
    # the API on a DataFrame and on windows (N, channels, window)
    m = dltrain.load(series)
    pd.testing.assert_frame_equal(m.predict(pd.read_csv(test_file)), ahead, check_dtype=False,
                                  rtol=1e-6)
    window = pd.read_csv(test_file)[["load", "temp"]].to_numpy()[-12:].T[None]
    forecast = m.predict(window.astype(np.float32))
    assert forecast.shape == (1, 2, 3)
    np.testing.assert_allclose(forecast[0, 1], ahead["pred_temp"], rtol=1e-6)
    # windows in an array file: a forecast for each
    np.savez(tmp_path / "windows.npz", x=np.concatenate([window, window]).astype(np.float32))
    code, _, err = predict(capsys, series, tmp_path / "windows.npz", "--out", tmp_path / "w.npz")
    assert code == 0, err
    with np.load(tmp_path / "w.npz") as npz:
        assert npz["forecast"].shape == (2, 2, 3) and list(npz["channels"]) == ["load", "temp"]
        np.testing.assert_allclose(npz["forecast"][1], forecast[0], rtol=1e-6)
    # too short, or without a channel
    series_frame(5, 0).to_csv(tmp_path / "short.csv", index=False)
    code, _, err = predict(capsys, series, tmp_path / "short.csv")
    assert code == 2 and "holds 5 time steps, fewer than the model's window of 12" in err
    series_frame(30, 0).drop(columns=["temp"]).to_csv(tmp_path / "one.csv", index=False)
    code, _, err = predict(capsys, series, tmp_path / "one.csv")
    assert code == 2 and "has no column 'temp'" in err and "a series of load, temp" in err


# ---------------------------------------------------------------------------------------------
# A language model


def test_a_language_model_continues_a_prompt(text, tmp_path, capsys):
    code, said, err = predict(capsys, text, "the c", "--length", "20", "--temperature", "0")
    assert code == 0, err
    written = said.rstrip("\n")
    assert written.startswith("the c") and len(written) == 25
    # greedy: the first character is the model's most likely one after the prompt, by hand
    m = dltrain.load(text)
    ids = torch.from_numpy(encode("the c", m.spec.vocab))[None]
    with torch.no_grad():
        first = m.model(ids)[0, -1].argmax().item()
    assert written[5] == m.spec.vocab[first]
    assert m.predict("the c", length=20, temperature=0) == written
    # sampled: reproducible by seed, characters of the vocabulary
    out = tmp_path / "sample.txt"
    code, said, err = predict(capsys, text, "the", "--length", "40", "--seed", "3", "--out", out)
    assert code == 0 and said.startswith("wrote 43 characters"), err
    sample = out.read_text(encoding="utf-8")
    assert sample == m.predict("the", length=40, seed=3)
    assert set(sample) <= set(m.spec.vocab)
    code, _, err = predict(capsys, text, "")
    assert code == 2 and "prompt is empty" in err
    with pytest.raises(dltrain.errors.ConfigError, match="continues a prompt"):
        m.predict(np.zeros((2, 16)))


def test_summary_json_is_what_load_reads(tables):
    run_dir = tables["regression"]
    m = dltrain.load(run_dir)
    assert m.summary == json.loads((run_dir / "summary.json").read_text())
    assert m.run_dir == run_dir and "regression on table" in repr(m)
