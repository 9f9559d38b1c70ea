"""task=reconstruction: the inputs become the targets, for data in memory and streamed alike."""

import pytest
import torch

from dltrain.data import build_data
from dltrain.data.batches import InputTargets, ShuffledBatches, train_batches
from dltrain.data.spec import Data, DataSpec, Split
from dltrain.data.tasks import with_task
from dltrain.errors import ConfigError
from dltrain.targets import plain
from tests.data.files import fake_mnist


def test_reconstruction_makes_the_inputs_the_targets_and_keeps_the_labels(make_cfg):
    data = build_data(plain(make_cfg("data.n_train=200", "data.n_test=50").data))
    task = with_task(data, "reconstruction")
    for split, own in ((task.train, data.train), (task.val, data.val), (task.test, data.test)):
        assert split.y is split.x and torch.equal(split.x, own.x)
    assert torch.equal(task.test_labels, data.test.y)
    assert task.spec.task == "reconstruction" and task.spec.out_features == 28 * 28
    assert task.spec.class_names == data.spec.class_names and task.norm == data.norm
    assert with_task(data, None) is data and with_task(data, "classification") is data


def test_a_task_that_does_not_fit_the_data_is_refused(make_cfg):
    data = build_data(plain(make_cfg("data=sine", "data.n_train=50").data))
    with pytest.raises(ConfigError) as err:
        with_task(data, "classification")
    assert str(err.value) == ("task=classification does not fit data=sine, a regression data "
                              "set; leave task=null (the data's own task) or use "
                              "task=reconstruction.")
    ids = torch.zeros(4, 8, dtype=torch.long)
    text = Data(Split(ids, ids), Split(ids, ids), Split(ids, ids),
                DataSpec("text", "language_model", "tokens", (8,), vocab_size=5))
    with pytest.raises(ConfigError, match="data=text gives token sequences; leave task=null"):
        with_task(text, "reconstruction")


def test_streamed_reconstruction_batches_equal_the_in_memory_ones(make_cfg, tmp_path):
    fake_mnist(tmp_path, n_train=200, n_test=20, gz=False)
    common = (f"data.root={tmp_path}", "data=mnist", "data.workers=0")
    memory = with_task(build_data(plain(make_cfg(*common).data)), "reconstruction")
    streamed = with_task(build_data(plain(make_cfg(*common, "data.in_memory=false").data)),
                         "reconstruction")
    a, b = train_batches(memory, 16, seed=3), train_batches(streamed, 16, seed=3)
    assert isinstance(b, InputTargets)
    pairs = list(zip(a.epoch(1), b.epoch(1), strict=True))
    assert pairs
    for (xa, ya), (xb, yb) in pairs:
        assert torch.allclose(xa, xb, atol=1e-5) and torch.allclose(ya, yb, atol=1e-5)
        assert torch.equal(xb, yb)


def test_augmentation_changes_the_inputs_only_a_denoising_autoencoder(make_cfg):
    cfg = make_cfg("data.n_train=100", "reg=[augment]", "data.augment.noise=0.5")
    data = with_task(build_data(plain(cfg.data)), "reconstruction")
    x, y = next(iter(train_batches(data, 32, seed=0).epoch(0)))
    clean, _ = next(iter(ShuffledBatches(data.train, 32, seed=0).epoch(0)))
    assert torch.equal(y, clean) and not torch.allclose(x, clean, atol=0.1)
