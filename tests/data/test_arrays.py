"""data=arrays: .npz, .npy pairs and HDF5 read into Data (unit), and trained by the real command
(e2e), with every bad-data case one sentence and exit code 2."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from dltrain.data import build_data
from dltrain.data.arrays import H5Rows
from dltrain.data.batches import StreamedBatches, train_batches
from dltrain.data.owned import decide_kind
from dltrain.data.spec import HostSplit
from dltrain.errors import ConfigError
from tests.conftest import ROOT, run_cli, run_cli_batch

DEFAULTS = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "data" / "arrays.yaml"))


def cfg(**keys) -> dict:
    return {**DEFAULTS, **keys}


def blobs(n: int = 400, features: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two well separated classes of vectors."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(size=(n, features)).astype(np.float32) + 4.0 * y[:, None]
    return x, y


def squares(n: int = 300, size: int = 12, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, H, W) images: class 0 lights the left half, class 1 the right one, with noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = rng.normal(0, 0.3, size=(n, size, size)).astype(np.float32)
    for i, label in enumerate(y):
        x[i, :, (size // 2) * label:(size // 2) * (label + 1)] += 1.0
    return x, y


# --- kinds ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("shape", "kind"), [
    ((10, 5), "vector"), ((10, 28, 28), "image"), ((10, 64, 128), "image"),
    ((10, 3, 500), "signal"), ((10, 1, 64), "signal"), ((10, 3, 32, 32), "image"),
])
def test_the_kind_is_read_from_the_shape(shape, kind):
    assert decide_kind(shape, "auto")[0] == kind


def test_data_kind_overrides_the_shape_and_refuses_a_shape_it_cannot_read():
    assert decide_kind((10, 28, 28), "signal")[0] == "signal"
    assert decide_kind((10, 100), "signal")[0] == "signal"
    with pytest.raises(ConfigError, match=r"data.kind=vector cannot read"):
        decide_kind((10, 28, 28), "vector")
    with pytest.raises(ConfigError, match="cannot be read"):
        decide_kind((10, 2, 3, 4, 5), "auto")


# --- readers ----------------------------------------------------------------------------------

def test_npz_vectors_with_integer_labels_are_a_classification(tmp_path):
    x, y = blobs(400)
    np.savez(tmp_path / "d.npz", inputs=x, labels=y + 3)  # labels 3 and 4
    data = build_data(cfg(path=str(tmp_path / "d.npz"), x="inputs", y="labels"))
    assert data.spec.task == "classification" and data.spec.kind == "vector"
    assert data.spec.input_shape == (5,) and data.spec.class_names == ("3", "4")
    sizes = (len(data.train), len(data.val), len(data.test))
    assert sizes == (288, 32, 80)  # test 20 %, validation 10 % of the rest
    # inputs standardised with the train split's statistics
    assert torch.allclose(data.train.x.mean(0), torch.zeros(5), atol=1e-5)
    assert sorted(data.train.y.unique().tolist()) == [0, 1]
    assert "vectors of 5 features" in data.facts["kind"]


def test_an_npy_pair_of_signals_and_float_targets_is_a_regression(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 40)).astype(np.float32)  # (N, L): one-channel signals
    y = np.stack([x.mean(1), x.max(1)], axis=1) * 10 + 5
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    data = build_data(cfg(path=str(tmp_path / "x.npy"), y_path=str(tmp_path / "y.npy"),
                          kind="signal"))
    assert data.spec.task == "regression" and data.spec.kind == "signal"
    assert data.spec.input_shape == (1, 40) and data.spec.num_outputs == 2
    assert data.spec.target_shape == ()
    # targets standardised for training, restored in the data's units
    restored = data.target_scale.restore(data.test.y).numpy()
    assert np.isclose(restored[:, 0].mean(), y[:, 0].mean(), atol=1.0)
    assert abs(float(data.train.y.mean())) < 1e-4


def test_hdf5_dataset_paths_and_fields_of_the_images_size(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 2, 8, 8)).astype(np.float32)
    y = np.concatenate([x.sum(1, keepdims=True), x[:, :1] * 2, x[:, 1:] - 1], axis=1)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("sim/inputs", data=x)
        f.create_dataset("sim/outputs", data=y)
    data = build_data(cfg(path=str(tmp_path / "f.h5"), x="sim/inputs", y="sim/outputs"))
    assert data.spec.task == "regression" and data.spec.kind == "image"
    assert data.spec.input_shape == (2, 8, 8) and data.spec.target_shape == (3, 8, 8)
    assert data.spec.num_outputs == 3 * 8 * 8
    assert tuple(data.train.y.shape[1:]) == (3, 8, 8)


def test_a_grey_field_beside_grey_images_gets_its_channel_axis(tmp_path):
    x = np.random.default_rng(3).normal(size=(50, 16, 16)).astype(np.float32)
    np.savez(tmp_path / "g.npz", x=x, y=x ** 2)
    data = build_data(cfg(path=str(tmp_path / "g.npz")))
    assert data.spec.input_shape == (1, 16, 16) and data.spec.target_shape == (1, 16, 16)


def test_given_validation_and_test_files_are_used_as_they_are(tmp_path):
    for name, seed, n in (("train", 0, 200), ("val", 1, 30), ("test", 2, 40)):
        x, y = blobs(n, seed=seed)
        np.save(tmp_path / f"{name}_x.npy", x)
        np.save(tmp_path / f"{name}_y.npy", y)
    data = build_data(cfg(path=str(tmp_path / "train_x.npy"),
                          y_path=str(tmp_path / "train_y.npy"),
                          val_path=[str(tmp_path / "val_x.npy"), str(tmp_path / "val_y.npy")],
                          test_path=[str(tmp_path / "test_x.npy"),
                                     str(tmp_path / "test_y.npy")]))
    assert (len(data.train), len(data.val), len(data.test)) == (200, 30, 40)


# --- bad data ---------------------------------------------------------------------------------

def _npz(tmp_path: Path, name: str, **arrays) -> str:
    np.savez(tmp_path / f"{name}.npz", **arrays)
    return str(tmp_path / f"{name}.npz")


def test_bad_data_is_one_sentence(tmp_path):
    x, y = blobs(50)
    np.save(tmp_path / "x.npy", x)
    cases = [
        (cfg(path=str(tmp_path / "nope.npz")), "data.path=.*nope.npz: no such file"),
        (cfg(path=_npz(tmp_path, "a", inputs=x, y=y)),
         r"has no array 'x' \(data.x\); did you mean 'inputs'"),
        (cfg(path=_npz(tmp_path, "b", x=x, y=y[:40])), "x has 50 samples and y 40"),
        (cfg(path=_npz(tmp_path, "c", x=np.array([["a", "b"]] * 50), y=y)),
         "holds <U1 values, not numbers"),
        (cfg(path=str(tmp_path / "x.npy")), "name the targets' file with data.y_path"),
        (cfg(path=str(tmp_path / "x.npy"), y_path=str(tmp_path / "x.npy"),
             val_path=str(tmp_path / "x.npy")), r"give the pair data.val_path=\[X.npy,Y.npy\]"),
    ]
    for keys, message in cases:
        with pytest.raises(ConfigError, match=message):
            build_data(keys)


def test_nan_rows_are_counted_or_dropped(tmp_path):
    x, y = blobs(100)
    x[[3, 10, 50], 1] = np.nan
    path = _npz(tmp_path, "nan", x=x, y=y.astype(np.float64))
    with pytest.raises(ConfigError, match=r"3 of 100 samples hold NaN .* first is row 3.*"
                                          "data.missing=drop"):
        build_data(cfg(path=path, task="classification"))
    data = build_data(cfg(path=path, task="classification", missing="drop"))
    assert len(data.train) + len(data.val) + len(data.test) == 97
    assert data.facts["dropped_rows"] == 3


def test_hdf5_missing_dataset_suggests_the_nearest(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("group/inputs", data=np.zeros((10, 3)))
        f.create_dataset("group/labels", data=np.zeros(10))
    with pytest.raises(ConfigError, match=r"has no array 'group/input' .* did you mean "
                                          r"'group/inputs'"):
        build_data(cfg(path=str(tmp_path / "f.h5"), x="group/input", y="group/labels"))


# --- streaming (data.in_memory=false) ---------------------------------------------------------

def _train_rows(data) -> tuple[torch.Tensor, torch.Tensor]:
    host = data.train
    assert isinstance(host, HostSplit)
    shape = (1, len(host.mean)) + (1,) * (host.x.ndim - 2)
    x = torch.as_tensor(np.asarray(host.x[host.index], dtype=np.float32))
    x = (x - torch.tensor(host.mean).view(shape)) / torch.tensor(host.std).view(shape)
    return x, torch.as_tensor(host.y[host.index])


@pytest.mark.parametrize("fmt", ["npy", "h5"])
def test_streamed_inputs_stay_in_the_file_and_give_the_same_splits(tmp_path, fmt):
    x, y = squares(200)
    if fmt == "npy":
        np.save(tmp_path / "x.npy", x)
        np.save(tmp_path / "y.npy", y)
        keys = {"path": str(tmp_path / "x.npy"), "y_path": str(tmp_path / "y.npy")}
    else:
        with h5py.File(tmp_path / "d.h5", "w") as f:
            f.create_dataset("x", data=x, chunks=(16, 12, 12))
            f.create_dataset("y", data=y)
        keys = {"path": str(tmp_path / "d.h5")}
    memory = build_data(cfg(**keys))
    streamed = build_data(cfg(**keys, in_memory=False, workers=0))
    assert isinstance(streamed.train.x, np.memmap if fmt == "npy" else H5Rows)
    x_rows, y_rows = _train_rows(streamed)
    assert torch.allclose(x_rows, memory.train.x, atol=1e-5)
    assert torch.equal(y_rows, memory.train.y)
    assert torch.allclose(streamed.val.x, memory.val.x, atol=1e-5)
    assert torch.equal(streamed.test.y, memory.test.y)
    assert streamed.spec == memory.spec
    batches = train_batches(streamed, 32, seed=0)
    assert isinstance(batches, StreamedBatches)
    xb, yb = next(iter(batches.epoch(0)))
    assert xb.shape == (32, 1, 12, 12) and yb.dtype == torch.int64


def test_hdf5_rows_read_any_order_and_travel_to_a_worker_by_name(tmp_path):
    x = np.arange(40, dtype=np.float32).reshape(10, 4)
    with h5py.File(tmp_path / "r.h5", "w") as f:
        f.create_dataset("a", data=x)
    rows = H5Rows(tmp_path / "r.h5", "a", x.shape, x.dtype)
    assert np.array_equal(rows[np.array([7, 2, 2, 9])], x[[7, 2, 2, 9]])
    rows[0:1]  # opens the file
    again = pickle.loads(pickle.dumps(rows))
    assert np.array_equal(again.with_channel()[[1]], x[[1]][:, None])


# --- the real command -------------------------------------------------------------------------

SMOKE = ("trainer=smoke", "logger=none", "trainer.device=cpu")


def _summary(cwd: Path) -> dict:
    runs = sorted((cwd / "outputs" / "runs").iterdir())
    return json.loads((runs[-1] / "summary.json").read_text())


def _train(tmp_path: Path, *overrides: str) -> dict:
    done = run_cli(*SMOKE, *overrides, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return _summary(tmp_path)


@pytest.mark.e2e
def test_cli_npz_and_hdf5_classification(tmp_path):
    x, y = blobs(600)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    summary = _train(tmp_path, "data=arrays", "data.path=d.npz")
    assert summary["status"] == "completed" and summary["task"] == "classification"
    assert summary["test"]["accuracy"] > 0.95  # the classes are 4 standard deviations apart
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f.create_dataset("in/x", data=x)
        f.create_dataset("in/y", data=y)
    summary = _train(tmp_path, "data=arrays", "data.path=d.h5", "data.x=in/x", "data.y=in/y",
                     "data.in_memory=false", "data.workers=0")
    assert summary["test"]["accuracy"] > 0.95


@pytest.mark.e2e
def test_cli_separable_images_from_npy_files_reach_95_percent(tmp_path):
    x, y = squares(600)
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    summary = _train(tmp_path, "data=arrays", "data.path=x.npy", "data.y_path=y.npy",
                     "model=cnn", "model.channels=[8]", "trainer.max_steps=30")
    assert summary["task"] == "classification"
    assert summary["test"]["accuracy"] > 0.95


@pytest.mark.e2e
def test_cli_linear_regression_is_learned_in_the_datas_units(tmp_path):
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2000, 3)).astype(np.float32)
    y = (x @ np.array([2.0, -1.0, 0.5]) * 100 + 1000).astype(np.float32)  # far from N(0, 1)
    np.savez(tmp_path / "r.npz", x=x, y=y)
    summary = _train(tmp_path, "data=arrays", "data.path=r.npz", "optim.lr=0.01",
                     "trainer.max_steps=150", "trainer.max_epochs=10")
    assert summary["task"] == "regression"
    assert summary["test"]["r2"] > 0.95
    # in the data's units: y's standard deviation is about 229, so an R^2 of 0.95 is an rmse
    # near 50, not near 0.2 as standardised targets would give
    std = float(y.std())
    assert summary["test"]["rmse"] == pytest.approx(
        std * np.sqrt(1 - summary["test"]["r2"]), rel=0.2)


BAD_ARRAYS = [
    (None, ("data.path=missing.npz",), "data.path=missing.npz: no such file"),
    ({"inputs": "x", "y": "y"}, ("data.path=d.npz",),
     "has no array 'x' (data.x); did you mean 'inputs'?"),
    ({"x": "x", "y": "short"}, ("data.path=d.npz",), "x has 60 samples and y 50"),
    ({"x": "text", "y": "y"}, ("data.path=d.npz",), "not numbers"),
    ({"x": "nan", "y": "y"}, ("data.path=d.npz",), "2 of 60 samples hold NaN"),
]


@pytest.fixture(scope="module")
def bad_arrays(tmp_path_factory) -> list:
    """Each case of BAD_ARRAYS (its arrays in a file of its own), in one process."""
    root = tmp_path_factory.mktemp("bad_arrays")
    x, y = blobs(60)
    nan = x.copy()
    nan[[5, 6], 0] = np.nan
    made = {"x": x, "y": y, "short": y[:50], "text": np.array([["a"]] * 60), "nan": nan}
    commands = []
    for i, (arrays, overrides, _) in enumerate(BAD_ARRAYS):
        if arrays is not None:
            np.savez(root / f"d{i}.npz", **{k: made[v] for k, v in arrays.items()})
        commands.append(["data=arrays", *(o.replace("d.npz", f"d{i}.npz") for o in overrides),
                         *SMOKE])
    return run_cli_batch(commands, cwd=root)


@pytest.mark.e2e
@pytest.mark.parametrize("case", range(len(BAD_ARRAYS)), ids=[m for *_, m in BAD_ARRAYS])
def test_cli_bad_arrays_exit_2_with_one_sentence(bad_arrays, case):
    done, message = bad_arrays[case], BAD_ARRAYS[case][2]
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert message in done.stderr + done.stdout
    assert "Traceback" not in done.stderr


@pytest.mark.e2e
def test_cli_a_field_to_field_map_is_learned_by_a_cnn(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 2, 8, 8)).astype(np.float32)
    y = np.concatenate([2 * x[:, :1] - x[:, 1:], 3 * x[:, 1:] + 1], axis=1)  # (N, 2, 8, 8)
    np.savez(tmp_path / "f.npz", x=x, y=y)
    summary = _train(tmp_path, "data=arrays", "data.path=f.npz", "model=cnn", "optim.lr=0.01",
                     "trainer.max_steps=100", "trainer.max_epochs=30")
    assert summary["task"] == "regression"
    assert summary["test"]["r2"] > 0.95  # pointwise linear: about 0.99 after 100 steps
