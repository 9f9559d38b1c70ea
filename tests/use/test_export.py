"""`dltrain export` in-process: the three formats of a regression table run (with a one-hot
column) and of an image classification run, read back with each format's own reader and
compared with the model computed here by hand from best.pt (the normalisation and the
way back into the data's units done in numpy, not by dltrain's InUnits); the dynamic batch
axis; a check that fails leaves nothing behind; a missing package is one sentence."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from hydra import compose, initialize_config_dir

from dltrain.cli import CONFIG_NAME, conf_dir, main
from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models import build_model
from dltrain.run import run
from dltrain.use import export as ex
from dltrain.use.export import ExportMismatch, export_run

FEATURES = ["a", "b", "c", "site=north", "site=south"]

# TorchScript is what the format asks for, though PyTorch now marks torch.jit as deprecated
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")


def train(run_dir: Path, *overrides: str) -> Path:
    """A smoke run of `overrides` in `run_dir`, in this process; it must complete."""
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
        cfg = compose(CONFIG_NAME, overrides=["trainer=smoke", "logger=[]", *overrides])
    result = run(cfg, run_dir)
    assert result.status == "completed", result.summary.get("error")
    return run_dir


def sites(n: int = 600, seed: int = 2) -> pd.DataFrame:
    """Three numbers (one in the hundreds) and a text column -> y around 12."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(n, 3))
    site = rng.choice(["north", "south"], n)
    y = 1.5 * x[:, 0] - 2.0 * x[:, 1] + 0.5 * x[:, 2] + 10.0 + np.where(site == "south", 5, 0)
    return pd.DataFrame({"a": 100 * x[:, 0], "b": x[:, 1], "c": x[:, 2], "site": site, "y": y})


def encoded(frame: pd.DataFrame) -> np.ndarray:
    """The table's rows as the exported graph takes them: the numbers, then site one-hot."""
    return np.column_stack([frame["a"], frame["b"], frame["c"], frame["site"] == "north",
                            frame["site"] == "south"]).astype(np.float32)


def table_run_in(root: Path) -> Path:
    sites().to_csv(root / "sites.csv", index=False)
    return train(root / "run", "data=table", f"data.path={root / 'sites.csv'}", "data.target=y")


def glyph_run_in(root: Path) -> Path:
    return train(root / "run", "data=glyphs", "model=cnn", "data.n_train=1000",
                 "data.n_test=200")


def by_hand(run_dir: Path, x: np.ndarray) -> np.ndarray:
    """What the run's model says about raw inputs `x`, from best.pt alone: standardise with
    its statistics, run the model, softmax or un-standardise — in numpy, by hand."""
    payload = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    spec = DataSpec.from_dict(payload["spec"])
    model = build_model(payload["config"]["model"], payload["config"]["init"], spec)
    model.load_state_dict(payload["model"])
    norm = payload["norm"]
    mean, std = np.asarray(norm["mean"]), np.asarray(norm["std"])
    if spec.kind == "image":  # per channel
        mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    scale = float(payload["data"].get("pixel_scale", 1.0))
    z = ((np.asarray(x, dtype=np.float64) / scale - mean) / std).astype(np.float32)
    with torch.no_grad():
        out = model.eval()(torch.from_numpy(z)).double().numpy()
    if spec.task == "classification":
        e = np.exp(out - out.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    target = norm["target"]
    return out * np.asarray(target["std"]) + np.asarray(target["mean"])


def read_back(path: Path, fmt: str, x: np.ndarray) -> np.ndarray:
    """The exported file run as its users run it: onnxruntime, torch.jit.load, or the
    safetensors weights in a model built from model.json, with its statistics applied here."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(None, {"x": x})[0]
    if fmt == "torchscript":
        with torch.no_grad():
            return torch.jit.load(str(path)).eval()(torch.from_numpy(x)).numpy()
    from safetensors.torch import load_file

    card = json.loads(path.with_suffix(".json").read_text())
    spec = DataSpec.from_dict(card["spec"])
    model = build_model(card["model"], card["init"], spec).eval()
    model.load_state_dict(load_file(str(path)))
    stats = card["normalisation"]
    mean, std = np.asarray(stats["mean"]), np.asarray(stats["std"])
    if spec.kind == "image":
        mean, std = mean.reshape(1, -1, 1, 1), std.reshape(1, -1, 1, 1)
    z = ((x / stats["pixel_scale"] - mean) / std).astype(np.float32)
    with torch.no_grad():
        out = model(torch.from_numpy(z)).double().numpy()
    if spec.task == "classification":
        return torch.softmax(torch.from_numpy(out), dim=1).numpy()
    return out * np.asarray(stats["target_std"]) + np.asarray(stats["target_mean"])


def close(got: np.ndarray, want: np.ndarray) -> float:
    """The largest difference relative to the largest magnitude of `want`."""
    assert got.shape == want.shape
    return float(np.max(np.abs(got - want)) / np.max(np.abs(want)))


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    return table_run_in(tmp_path_factory.mktemp("table"))


@pytest.fixture(scope="module")
def glyph_run(tmp_path_factory) -> Path:
    return glyph_run_in(tmp_path_factory.mktemp("glyphs"))


def export_all(run_dir: Path) -> dict[str, ex.Exported]:
    pytest.importorskip("onnxruntime")  # CI installs the export extra; skip only without it
    pytest.importorskip("safetensors")
    return {fmt: export_run(run_dir, fmt) for fmt in ex.FORMATS}


@pytest.fixture(scope="module")
def table_exports(table_run) -> dict[str, ex.Exported]:
    return export_all(table_run)


@pytest.fixture(scope="module")
def glyph_exports(glyph_run) -> dict[str, ex.Exported]:
    return export_all(glyph_run)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_a_table_export_takes_encoded_rows_and_answers_in_the_targets_units(
        table_run, table_exports, fmt):
    done = table_exports[fmt]
    assert done.path == table_run / "export" / ex.FORMATS[fmt].filename
    assert done.samples.source == "64 test samples of the run's data"
    assert done.max_rel <= 1e-4
    rows = sites()
    x = encoded(rows.tail(50))
    got, want = read_back(done.path, fmt, x), by_hand(table_run, x)
    assert got.shape == (50, 1)
    assert close(got, want) < 1e-4
    # in the data's units: the predictions are spread around the targets' own mean (about
    # 12.5 with a std of 4.3), not around 0 as standardised outputs would be
    assert abs(got.mean() - rows["y"].mean()) < rows["y"].std()


def test_the_check_ran_on_real_test_rows_in_raw_units(table_run, table_exports):
    """The samples of the check are rows of the user's file (the test split, put back from
    its normalisation): each is one of the file's encoded rows."""
    x = table_exports["torchscript"].samples.x.numpy()
    rows = encoded(sites())
    nearest = np.abs(rows[None, :, :] - x[:, None, :]).max(axis=2).min(axis=1)
    assert x.shape == (64, 5)
    assert nearest.max() < 1e-3  # a in the hundreds: float32 rounding of 1e-5 relative


@pytest.mark.parametrize("fmt", ["onnx", "torchscript", "safetensors"])
def test_an_image_export_takes_pixels_and_answers_class_probabilities(
        glyph_run, glyph_exports, fmt):
    from dltrain.data.glyphs import glyphs  # raw glyphs drawn here, not by the export

    done = glyph_exports[fmt]
    assert done.samples.source == "64 test samples of the run's data" and done.max_rel <= 1e-4
    data = glyphs(32, 0.2, torch.Generator().manual_seed(7))
    x = data[0].numpy()
    got, want = read_back(done.path, fmt, x), by_hand(glyph_run, x)
    assert got.shape == (32, 10)
    assert close(got, want) < 1e-4
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)


def test_the_onnx_batch_axis_is_dynamic(table_run, table_exports, glyph_run, glyph_exports):
    import onnx

    for run_dir, exports, shape in ((table_run, table_exports, [5]),
                                    (glyph_run, glyph_exports, [1, 28, 28])):
        path = exports["onnx"].path
        graph = onnx.load(str(path)).graph
        dims = [d.dim_param or d.dim_value for d in graph.input[0].type.tensor_type.shape.dim]
        assert dims[1:] == shape and isinstance(dims[0], str)  # a named, free batch axis
        for n in (1, 7):
            x = np.random.default_rng(n).normal(0.5, 0.3, (n, *shape)).astype(np.float32)
            assert close(read_back(path, "onnx", x), by_hand(run_dir, x)) < 1e-4


def test_the_files_carry_what_a_user_needs(table_run, table_exports, glyph_exports):
    import onnx

    card = json.loads((table_run / "export" / "model.json").read_text())
    assert card["input"]["features"] == FEATURES
    assert card["input"]["categories"] == {"site": ["north", "south"]}
    assert card["output"]["name"] == "values" and card["output"]["target"] == ["y"]
    assert card["normalisation"]["inside_the_graph"] is False
    best = torch.load(table_run / "checkpoints" / "best.pt", weights_only=True)
    assert card["normalisation"]["target_mean"] == best["norm"]["target"]["mean"]
    assert card["normalisation"]["mean"] == best["norm"]["mean"]
    meta = {p.key: p.value for p in onnx.load(str(glyph_exports["onnx"].path)).metadata_props}
    inside = json.loads(meta["dltrain"])
    assert inside["output"]["class_names"] == [str(d) for d in range(10)]
    assert inside["normalisation"]["inside_the_graph"] is True
    files = {}
    torch.jit.load(str(table_exports["torchscript"].path), _extra_files=files.setdefault(
        "x", {"dltrain.json": ""}))
    assert json.loads(files["x"]["dltrain.json"])["input"]["features"] == FEATURES
    umask = os.umask(0o022)
    os.umask(umask)
    for done in table_exports.values():  # as any program's files: by the umask, not 0600
        assert done.path.stat().st_mode & 0o777 == 0o666 & ~umask


def corrupting(fmt: str):
    """The format's writer, writing weights that are off by 0.5 (the run's own model in
    memory is changed after the check's reference was computed)."""
    write = ex.FORMATS[fmt].write

    def corrupt(run, path, example):
        with torch.no_grad():
            next(run.model.parameters()).add_(0.5)
        write(run, path, example)

    return replace(ex.FORMATS[fmt], write=corrupt)


@pytest.mark.parametrize("fmt", ["torchscript", "safetensors"])
def test_an_export_that_fails_its_check_is_refused_and_leaves_nothing(
        table_run, tmp_path, monkeypatch, capsys, fmt):
    monkeypatch.setitem(ex.FORMATS, fmt, corrupting(fmt))
    out = tmp_path / "new" / "model.file"
    with pytest.raises(ExportMismatch, match=f"the {fmt} export differs from the run's model"):
        export_run(table_run, fmt, out)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary, no sidecar, no new folder
    # through the command: exit 1 (the export failed, the input was fine), one line
    kept = tmp_path / "model.file"
    kept.write_text("an older export")  # a file that was there stays as it was
    with pytest.raises(SystemExit) as ended:
        main(["export", str(table_run), "--format", fmt, "--out", str(kept)])
    err = capsys.readouterr().err
    assert ended.value.code == 1
    assert err.startswith(f"dltrain: export failed: the {fmt} export differs from the run's "
                          "model by up to ") and err.count("\n") == 1
    assert f"on 64 test samples of the run's data; nothing was written to {kept}." in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.file"]
    assert kept.read_text() == "an older export"


def test_without_onnxruntime_one_sentence_names_the_extra(table_run, tmp_path, monkeypatch,
                                                          capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # `import onnxruntime` fails
    message = ("--format onnx needs the packages onnx, onnxscript, onnxruntime (onnxruntime "
               "not installed): pip install 'dltrain[export]'.")
    with pytest.raises(ConfigError) as refused:
        export_run(table_run, "onnx", tmp_path / "m.onnx")
    assert str(refused.value) == message
    with pytest.raises(SystemExit) as ended:
        main(["export", str(table_run), "--format", "onnx", "--out", str(tmp_path / "m.onnx")])
    assert ended.value.code == 2
    assert capsys.readouterr().err == f"dltrain: {message}\n"
    assert list(tmp_path.iterdir()) == []


def test_without_its_data_the_check_draws_inputs_from_the_statistics(table_run, tmp_path):
    csv = table_run.parent / "sites.csv"
    away = tmp_path / "sites.csv"
    csv.rename(away)
    try:
        done = export_run(table_run, "torchscript", tmp_path / "model.pt")
    finally:
        away.rename(csv)
    assert done.samples.source == (
        "64 samples drawn from the normalisation statistics (the run's data could not be "
        f"rebuilt: data.path={csv}: there is no such file)")
    assert done.max_rel <= 1e-4
    x = done.samples.x.numpy()
    best = torch.load(table_run / "checkpoints" / "best.pt", weights_only=True)
    mean, std = np.asarray(best["norm"]["mean"]), np.asarray(best["norm"]["std"])
    # raw inputs around the training inputs: within 0.5 std of their mean, spread like them
    assert np.all(np.abs(x.mean(axis=0) - mean) < 0.5 * std)
    assert np.all(np.abs(x.std(axis=0) / std - 1) < 0.3)
    assert close(read_back(done.path, "torchscript", x), by_hand(table_run, x)) < 1e-4


def test_a_bad_format_or_out_is_one_sentence(table_run, tmp_path):
    with pytest.raises(ConfigError, match=r"^--format onx is not one of onnx, torchscript, "
                                          r"safetensors; did you mean onnx\?$"):
        export_run(table_run, "onx")
    with pytest.raises(ConfigError, match="is a directory; give the file to write"):
        export_run(table_run, "torchscript", tmp_path)
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        export_run(tmp_path, "torchscript")


def test_a_missing_run_directory_is_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as ended:
        main(["export", str(tmp_path / "nope"), "--format", "torchscript"])
    err = capsys.readouterr().err
    assert ended.value.code == 2
    assert err.startswith("dltrain: ") and str(tmp_path / "nope") in err and err.count("\n") == 1


def test_the_relative_difference():
    want = np.array([[100.0, -200.0], [0.0, 50.0]])
    assert ex.difference(want + 0.02, want) == pytest.approx((0.02, 1e-4))
    assert ex.difference(want[:1], want) == (np.inf, np.inf)  # shapes differ
    nan = want.copy()
    nan[0, 0] = np.nan
    assert ex.difference(nan, want) == (np.inf, np.inf)  # NaN where the model has a number
    assert ex.difference(nan, nan)[0] == 0.0
