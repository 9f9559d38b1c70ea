"""MNIST-style IDX files and CIFAR-10 batches, built in the exact formats in a temp dir."""

import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from dltrain.data import build_data
from dltrain.data.unpickle import unpickle_arrays
from dltrain.data.vision import CIFAR_DIR, IDX_FILES, read_idx
from dltrain.errors import ConfigError
from dltrain.targets import plain
from tests.data.files import (
    cifar_batches,
    fake_mnist,
    idx_bytes,
    write_cifar_archive,
    write_cifar_folder,
    write_idx,
)

# ---------------------------------------------------------------------------------------------
# The IDX reader


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
def test_idx_round_trip(tmp_path, gz, dtype):
    array = (np.arange(2 * 3 * 4) - 5).astype(dtype).reshape(2, 3, 4)
    path = write_idx(tmp_path / "a", array, gz=gz)
    read = read_idx(path, 3)
    assert read.shape == (2, 3, 4) and read.dtype.isnative
    assert np.array_equal(read, array)


def test_gzip_is_told_by_content_not_by_name(tmp_path):
    array = np.arange(10, dtype=np.uint8)
    path = tmp_path / "labels"  # no .gz, but gzipped
    path.write_bytes(gzip.compress(idx_bytes(array)))
    assert np.array_equal(read_idx(path, 1), array)


def test_an_uncompressed_file_can_be_memory_mapped(tmp_path):
    array = np.arange(60, dtype=np.uint8).reshape(5, 3, 4)
    path = write_idx(tmp_path / "images", array)
    mapped = read_idx(path, 3, mmap=True)
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, array)
    assert not mapped.flags.writeable  # read-only: the file is never changed


@pytest.mark.parametrize("gz", [False, True])
def test_a_truncated_idx_file_is_named(tmp_path, gz):
    content = idx_bytes(np.zeros((10, 28, 28), np.uint8))[:-100]
    path = tmp_path / ("train-images-idx3-ubyte" + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(content) if gz else content)
    with pytest.raises(ConfigError) as err:
        read_idx(path, 3)
    assert str(path) in str(err.value) and "truncated" in str(err.value)
    assert "7,740 bytes of data where its header promises 7,840" in str(err.value)


def test_a_cut_gzip_stream_is_named(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    noise = np.random.default_rng(0).integers(0, 256, (50, 28, 28), dtype=np.uint8)
    path.write_bytes(gzip.compress(idx_bytes(noise))[:2000])
    with pytest.raises(ConfigError, match=r"t10k-images-idx3-ubyte\.gz is truncated or corrupt"):
        read_idx(path, 3)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x01\x02\x08\x03" + b"\x00" * 20, "is not an IDX file"),
        (b"\x00\x00\x07\x03" + b"\x00" * 20, "unknown data type 0x07"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x02ab", "holds a 1-dimensional array where a "
                                                "3-dimensional one belongs"),
        (b"\x00\x00\x08", "ends inside its header"),
        (b"\x00\x00\x08\x03\x00\x00", "ends inside its 16-byte header"),
        (idx_bytes(np.zeros((2, 2, 2), np.uint8)) + b"xx", "is corrupt: 2 bytes follow"),
    ],
)
def test_a_bad_idx_file_is_named_with_what_is_wrong(tmp_path, content, message):
    path = tmp_path / "file"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=message) as err:
        read_idx(path, 3)
    assert str(path) in str(err.value)


# ---------------------------------------------------------------------------------------------
# MNIST and Fashion-MNIST


def test_mnist_from_the_root_folder(make_cfg, tmp_path):
    arrays = fake_mnist(tmp_path, n_train=200, n_test=50, gz=False)
    data = build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}").data))
    assert (len(data.train), len(data.val), len(data.test)) == (180, 20, 50)
    spec = data.spec
    assert spec.task == "classification" and spec.kind == "image"
    assert spec.input_shape == (1, 28, 28) and spec.num_classes == 10
    assert spec.class_names == tuple("0123456789")
    assert data.train.x.dtype == torch.float32 and data.train.y.dtype == torch.int64
    # the test split is the t10k files, whole and in order
    mean, std = data.norm["mean"][0], data.norm["std"][0]
    raw = torch.from_numpy(arrays["t10k-images-idx3-ubyte"]).float() / 255
    assert torch.allclose(data.test.x[:, 0] * std + mean, raw, atol=1e-5)
    assert torch.equal(data.test.y, torch.from_numpy(arrays["t10k-labels-idx1-ubyte"]).long())


@pytest.mark.parametrize(("name", "folder"), [("mnist", "MNIST"),
                                              ("fashion_mnist", "FashionMNIST")])
def test_torchvisions_layout_gzipped(make_cfg, tmp_path, name, folder):
    fake_mnist(tmp_path / folder / "raw", n_train=100, n_test=30, gz=True)
    data = build_data(plain(make_cfg(f"data={name}", f"data.root={tmp_path}").data))
    assert (len(data.train) + len(data.val), len(data.test)) == (100, 30)
    assert data.spec.name == name


def test_fashion_mnist_names_its_classes(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=50, n_test=10)
    spec = build_data(plain(make_cfg("data=fashion_mnist", f"data.root={tmp_path}").data)).spec
    assert spec.class_names[0] == "T-shirt/top" and spec.class_names[9] == "Ankle boot"


def test_files_may_be_spread_over_both_places_and_both_forms(make_cfg, tmp_path):
    arrays = fake_mnist(tmp_path / "MNIST" / "raw", n_train=60, n_test=20, gz=True)
    # an uncompressed copy of the test images in the root is preferred (it can be mapped)
    write_idx(tmp_path / "t10k-images-idx3-ubyte", arrays["t10k-images-idx3-ubyte"][::-1].copy())
    data = build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}").data))
    mean, std = data.norm["mean"][0], data.norm["std"][0]
    first = torch.from_numpy(arrays["t10k-images-idx3-ubyte"][-1]).float() / 255
    assert torch.allclose(data.test.x[0, 0] * std + mean, first, atol=1e-5)


def test_normalisation_comes_from_the_train_split(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=400, n_test=50)
    data = build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}").data))
    assert abs(data.train.x.mean().item()) < 1e-5 and abs(data.train.x.std().item() - 1) < 1e-4
    assert abs(data.val.x.mean().item()) > 1e-4  # the val split is scaled, not standardised
    # undoing the saved normalisation gives back whole raw pixel values: x = (p/255 - m) / s
    raw = (data.train.x * data.norm["std"][0] + data.norm["mean"][0]) * 255
    assert torch.allclose(raw, raw.round(), atol=1e-3) and raw.min() > -1e-3


def test_validation_is_carved_from_the_training_files(make_cfg, tmp_path):
    arrays = fake_mnist(tmp_path, n_train=300, n_test=50)
    data = build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}",
                                     "data.val_fraction=0.2").data))
    mean, std = data.norm["mean"][0], data.norm["std"][0]

    def rows(split):  # each image as bytes, to compare sets of images
        pixels = (split.x[:, 0] * std + mean) * 255
        return {bytes(p.round().to(torch.uint8).flatten().tolist()) for p in pixels}

    pool = {bytes(a.flatten().tolist()) for a in arrays["train-images-idx3-ubyte"]}
    train, val = rows(data.train), rows(data.val)
    assert len(data.val) == 60 and val <= pool and train <= pool and not train & val


def test_n_train_draws_a_seeded_sample(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=300, n_test=20)

    def build(*overrides):
        return build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}", "data.n_train=100",
                                         *overrides).data))

    a, b, c = build(), build(), build("data.seed=1")
    assert len(a.train) + len(a.val) == 100
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert not torch.equal(a.train.y, c.train.y)


def test_n_train_beyond_the_files_is_refused(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=50, n_test=10)
    with pytest.raises(ConfigError, match=r"data\.n_train=80 is more than the 50 training"):
        build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}", "data.n_train=80").data))


def test_labels_that_do_not_match_the_images_are_named(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=50, n_test=10, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(49, np.uint8))
    with pytest.raises(ConfigError, match="holds 49 labels for 50 images"):
        build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}").data))


def test_a_truncated_file_in_the_root_stops_the_build_naming_it(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=50, n_test=10, gz=False)
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-28])
    with pytest.raises(ConfigError, match=f"{path} is truncated"):
        build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}").data))


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def test_cifar_from_the_batches_folder(make_cfg, tmp_path):
    batches = cifar_batches(20)
    write_cifar_folder(tmp_path, batches)
    data = build_data(plain(make_cfg("data=cifar10", f"data.root={tmp_path}").data))
    assert (len(data.train) + len(data.val), len(data.test)) == (100, 20)
    spec = data.spec
    assert spec.input_shape == (3, 32, 32) and spec.class_names[0] == "airplane"
    assert len(data.norm["mean"]) == 3  # per channel
    # the test images are test_batch's rows read as (3, 32, 32): red plane, green, blue
    mean = torch.tensor(data.norm["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(data.norm["std"]).view(1, 3, 1, 1)
    raw = torch.from_numpy(batches["test_batch"]["data"]).float().view(20, 3, 32, 32) / 255
    assert torch.allclose(data.test.x * std + mean, raw, atol=1e-5)
    assert data.test.y.tolist() == batches["test_batch"]["labels"]


def test_cifar_from_the_archive_equals_cifar_from_the_folder(make_cfg, tmp_path):
    batches = cifar_batches(10, seed=3)
    write_cifar_folder(tmp_path / "a", batches)
    write_cifar_archive(tmp_path / "b" / "cifar-10-python.tar.gz", batches)
    a = build_data(plain(make_cfg("data=cifar10", f"data.root={tmp_path / 'a'}").data))
    b = build_data(plain(make_cfg("data=cifar10", f"data.root={tmp_path / 'b'}").data))
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.y, b.test.y)
    assert not (tmp_path / "b" / CIFAR_DIR).exists()  # read from the archive, not extracted


def test_a_truncated_cifar_archive_is_named(make_cfg, tmp_path):
    path = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", cifar_batches(30))
    path.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ConfigError, match=f"{path} is truncated or corrupt"):
        build_data(plain(make_cfg("data=cifar10", f"data.root={tmp_path}").data))


def test_a_cifar_archive_without_a_batch_is_named(make_cfg, tmp_path):
    batches = cifar_batches(5)
    del batches["data_batch_3"]
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", batches)
    with pytest.raises(ConfigError, match="lacks cifar-10-batches-py/data_batch_3"):
        build_data(plain(make_cfg("data=cifar10", f"data.root={tmp_path}").data))


def test_a_cifar_batch_of_the_wrong_shape_is_named(make_cfg, tmp_path):
    batches = cifar_batches(5)
    batches["data_batch_2"]["data"] = np.zeros((5, 100), np.uint8)
    folder = write_cifar_folder(tmp_path, batches)
    with pytest.raises(ConfigError, match=f"{folder / 'data_batch_2'} is not a CIFAR-10 batch"):
        build_data(plain(make_cfg("data=cifar10", f"data.root={tmp_path}").data))


class _Payload:
    """Unpickling this would run os.mkdir(path): what a hostile data file would do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return os.mkdir, (self.path,)


def test_a_cifar_pickle_that_would_run_code_is_refused(make_cfg, tmp_path):
    target = tmp_path / "pwned"
    batches = cifar_batches(5)
    folder = write_cifar_folder(tmp_path, batches)
    batch = dict(batches["test_batch"], extra=_Payload(target))
    (folder / "test_batch").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(ConfigError, match="must not run code") as err:
        build_data(plain(make_cfg("data=cifar10", f"data.root={tmp_path}").data))
    assert "mkdir" in str(err.value) and not target.exists()


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_safe_unpickler_reads_arrays_of_any_protocol(protocol):
    obj = {"data": np.arange(12, dtype=np.uint8).reshape(3, 4), "labels": [1, 2, 3], "s": "x"}
    back = unpickle_arrays(pickle.dumps(obj, protocol=protocol), "where")
    assert np.array_equal(back["data"], obj["data"]) and back["labels"] == [1, 2, 3]


def test_a_garbled_pickle_is_named_as_corrupt():
    with pytest.raises(ConfigError, match="where is truncated or corrupt"):
        unpickle_arrays(pickle.dumps({"data": np.zeros(100)}, protocol=2)[:40], "where")


def test_idx_files_are_the_four_standard_names():
    assert IDX_FILES == ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
