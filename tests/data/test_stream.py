"""data.in_memory=false: the training split stays on the host and streams through a DataLoader,
giving the same batches as the in-memory path."""

import pickle

import numpy as np
import pytest
import torch

from dltrain.data import HostSplit, build_data
from dltrain.data.batches import StreamedBatches, _HostBatches, train_batches
from dltrain.targets import plain
from tests.data.files import cifar_batches, fake_mnist, write_cifar_folder


def both(make_cfg, root, *overrides):
    """The same data set built in memory and streamed."""
    common = (f"data.root={root}", *overrides)
    return (build_data(plain(make_cfg(*common, "data.in_memory=true").data)),
            build_data(plain(make_cfg(*common, "data.in_memory=false").data)))


def assert_same_batches(a, b, epoch, start=0):
    pairs = list(zip(a.epoch(epoch, start), b.epoch(epoch, start), strict=True))
    assert pairs
    for (xa, ya), (xb, yb) in pairs:
        assert torch.equal(ya, yb)
        assert torch.allclose(xa, xb, atol=1e-5)


@pytest.mark.parametrize("gz", [False, True])
def test_streamed_batches_equal_in_memory_batches(make_cfg, tmp_path, gz):
    fake_mnist(tmp_path, n_train=300, n_test=40, gz=gz)
    memory, streamed = both(make_cfg, tmp_path, "data=mnist", "data.workers=0")
    assert isinstance(streamed.train, HostSplit) and len(streamed.train) == len(memory.train)
    # an uncompressed file is mapped, not read; a gzipped one is decompressed into memory
    assert isinstance(streamed.train.x, np.memmap) is (not gz)
    assert streamed.norm["mean"] == pytest.approx(memory.norm["mean"], abs=1e-6)
    assert streamed.norm["std"] == pytest.approx(memory.norm["std"], abs=1e-6)
    # evaluation splits are the same tensors either way
    assert torch.allclose(streamed.val.x, memory.val.x, atol=1e-5)
    assert torch.allclose(streamed.test.x, memory.test.x, atol=1e-5)
    a, b = train_batches(memory, 32, seed=7), train_batches(streamed, 32, seed=7)
    assert isinstance(b, StreamedBatches) and len(a) == len(b)
    assert_same_batches(a, b, epoch=3)
    assert_same_batches(a, b, epoch=3, start=4)  # a resume in the middle of the epoch


def test_worker_processes_give_the_same_batches(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=200, n_test=20, gz=False)
    memory, streamed = both(make_cfg, tmp_path, "data=mnist", "data.workers=2")
    assert_same_batches(train_batches(memory, 16, seed=1), train_batches(streamed, 16, seed=1),
                        epoch=0)


def test_cifar_streams_per_channel(make_cfg, tmp_path):
    write_cifar_folder(tmp_path, cifar_batches(12))
    memory, streamed = both(make_cfg, tmp_path, "data=cifar10", "data.workers=0")
    assert len(streamed.norm["mean"]) == 3
    assert_same_batches(train_batches(memory, 8, seed=0), train_batches(streamed, 8, seed=0),
                        epoch=1)


def test_streamed_batches_are_augmented_too(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=100, n_test=20, gz=False)
    memory, streamed = both(make_cfg, tmp_path, "data=mnist", "data.workers=0", "reg=[augment]")
    assert_same_batches(train_batches(memory, 16, seed=2), train_batches(streamed, 16, seed=2),
                        epoch=0)


def test_a_memory_map_travels_to_workers_by_name_not_by_content(tmp_path):
    path = tmp_path / "x.bin"
    (np.arange(40_016) % 251).astype(np.uint8).tofile(path)
    x = np.memmap(path, dtype=np.uint8, mode="r", offset=16, shape=(1000, 1, 5, 8))
    reader = _HostBatches(x, np.arange(1000) % 10, np.arange(20).reshape(4, 5))
    blob = pickle.dumps(reader)
    assert len(blob) < 10_000  # the 40,000 bytes of pixels are not in it
    back = pickle.loads(blob)
    assert isinstance(back.x, np.memmap)
    for i in range(4):
        assert all(torch.equal(p, q) for p, q in zip(back[i], reader[i], strict=True))
