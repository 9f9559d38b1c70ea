import pytest
import torch

from dltrain.data import build_data
from dltrain.errors import ConfigError
from dltrain.targets import plain


def test_splits_sizes_and_spec(make_cfg):
    cfg = make_cfg("data=glyphs", "data.n_train=1000", "data.n_test=300", "data.val_fraction=0.2")
    data = build_data(plain(cfg.data))
    assert (len(data.train), len(data.val), len(data.test)) == (800, 200, 300)
    spec = data.spec
    assert spec.task == "classification" and spec.kind == "image"
    assert spec.input_shape == (1, 28, 28) and spec.num_classes == 10
    assert spec.out_features == 10


def test_regression_spec(make_cfg):
    data = build_data(plain(make_cfg("data=sine", "data.n_train=100").data))
    assert data.spec.task == "regression" and data.spec.input_shape == (1,)
    assert data.spec.num_outputs == 1 and data.train.y.shape == (90, 1)


def test_normalisation_uses_the_train_split_only(make_cfg):
    cfg = make_cfg("data=moons", "data.n_train=500", "data.noise=0.3")
    data = build_data(plain(cfg.data))
    # train is standardised exactly; val and test with the train statistics, so not exactly
    assert torch.allclose(data.train.x.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(data.train.x.std(0), torch.ones(2), atol=1e-5)
    raw = build_data(plain(cfg.data))  # same seed: same points
    mean, std = torch.tensor(data.norm["mean"]), torch.tensor(data.norm["std"])
    assert torch.allclose(raw.test.x * std + mean, data.test.x * std + mean)
    assert not torch.allclose(data.val.x.mean(0), torch.zeros(2), atol=1e-3)
    # the statistics are those of the raw training points
    from dltrain.data import synthetic

    x_pool, _ = synthetic.moons(500, 0.3, torch.Generator().manual_seed(0))
    x_train = x_pool[:450]
    assert torch.allclose(mean, x_train.mean(0), atol=1e-5)
    assert torch.allclose(std, x_train.std(0), atol=1e-5)


def test_image_normalisation_is_per_channel(make_cfg):
    data = build_data(plain(make_cfg("data.n_train=500", "data.n_test=10").data))
    assert len(data.norm["mean"]) == 1
    assert abs(data.train.x.mean().item()) < 1e-4 and abs(data.train.x.std().item() - 1) < 1e-3


def test_data_seed_changes_train_but_not_test(make_cfg):
    a = build_data(plain(make_cfg("data=moons", "data.seed=0").data))
    b = build_data(plain(make_cfg("data=moons", "data.seed=1").data))
    assert not torch.equal(a.train.y, b.train.y) or not torch.equal(a.train.x, b.train.x)
    # same test points (up to the different train normalisation)
    ma, sa = torch.tensor(a.norm["mean"]), torch.tensor(a.norm["std"])
    mb, sb = torch.tensor(b.norm["mean"]), torch.tensor(b.norm["std"])
    assert torch.allclose(a.test.x * sa + ma, b.test.x * sb + mb, atol=1e-5)
    assert torch.equal(a.test.y, b.test.y)


def test_a_validation_split_of_nothing_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="val_fraction"):
        build_data(plain(make_cfg("data=moons", "data.n_train=5", "data.val_fraction=0.01").data))
