"""A data-parallel process's shard of the training batches: its rows of every global batch,
picked before anything is gathered, loaded or augmented, and together the whole batch."""

import pytest
import torch

from dltrain.data import build_data
from dltrain.data.batches import StreamedBatches, train_batches
from dltrain.data.spec import Shard
from dltrain.errors import ConfigError
from dltrain.targets import plain
from tests.data.files import fake_mnist
from tests.data.test_text import english, text_data, write

AUGMENT = ["reg=[augment]", "data.augment.flip=true", "data.augment.translate=0.1",
           "data.augment.noise=0.2"]  # with the preset's crop and rotation: every draw


def assert_shards_make_the_batches(data, batch_size, count, epoch=2, start=0):
    whole = list(train_batches(data, batch_size, seed=3).epoch(epoch, start))
    shards = [list(train_batches(data, batch_size, seed=3, shard=Shard(r, count))
                   .epoch(epoch, start)) for r in range(count)]
    assert whole and all(len(s) == len(whole) for s in shards)
    for i, (x, y) in enumerate(whole):
        for r in range(count):
            xs, ys = shards[r][i]
            assert len(ys) == batch_size // count
            assert torch.equal(ys, y[r::count])
            # the same per-image arithmetic on fewer images: equal up to kernel rounding
            torch.testing.assert_close(xs, x[r::count], rtol=0, atol=1e-6)


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
@pytest.mark.parametrize("count", [2, 4])
def test_in_memory_shards_are_the_global_batch(make_cfg, augment, count):
    data = build_data(plain(make_cfg("data.n_train=400", "data.n_test=50",
                                     *(AUGMENT if augment else [])).data))
    assert (data.augment is not None) is augment
    assert_shards_make_the_batches(data, 32, count)
    assert_shards_make_the_batches(data, 32, count, start=5)  # a resume mid-epoch


@pytest.mark.parametrize("augment", [False, True], ids=["plain", "augmented"])
def test_streamed_shards_load_only_their_rows(make_cfg, tmp_path, augment):
    fake_mnist(tmp_path, n_train=300, n_test=40)
    data = build_data(plain(make_cfg("data=mnist", f"data.root={tmp_path}",
                                     "data.in_memory=false", "data.workers=0",
                                     *(AUGMENT if augment else [])).data))
    assert_shards_make_the_batches(data, 32, 2)
    streamed = train_batches(data, 32, seed=3, shard=Shard(1, 4))
    inner = streamed.inner if augment else streamed
    assert isinstance(inner, StreamedBatches)
    assert inner.loader(0).dataset.rows.shape[1] == 8  # the workers read a quarter


def test_text_shards_are_the_global_windows(make_cfg, tmp_path):
    data = text_data(make_cfg, write(tmp_path, english(3000)), "data.block_size=16")
    assert_shards_make_the_batches(data, 8, 2)


def test_a_batch_that_does_not_split_over_the_shards_is_refused(make_cfg):
    data = build_data(plain(make_cfg("data.n_train=400", "data.n_test=50").data))
    with pytest.raises(ConfigError, match=r"data\.batch_size=30 does not split evenly over 4"):
        train_batches(data, 30, seed=0, shard=Shard(1, 4))
