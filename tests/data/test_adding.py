"""data=adding and data=sine_series: procedural, offline, seeded sequences."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dltrain.data import build_data
from dltrain.data.adding import adding
from dltrain.data.sine_series import sine_series
from dltrain.errors import ConfigError
from dltrain.targets import plain


def test_two_markers_one_in_each_half_and_the_target_is_their_sum():
    x, y = adding(500, 0.0, torch.Generator().manual_seed(0), length=20)
    assert x.shape == (500, 2, 20) and y.shape == (500, 1)
    values, markers = x[:, 0], x[:, 1]
    assert ((values >= 0) & (values < 1)).all()
    assert torch.equal(markers[:, :10].sum(dim=1), torch.ones(500))
    assert torch.equal(markers[:, 10:].sum(dim=1), torch.ones(500))
    assert torch.allclose(y[:, 0], (values * markers).sum(dim=1))


def test_the_target_variance_is_a_sixth():
    _, y = adding(20000, 0.0, torch.Generator().manual_seed(1), length=10)
    assert y.var().item() == pytest.approx(1 / 6, rel=0.03)
    assert y.mean().item() == pytest.approx(1.0, abs=0.01)


def test_same_seed_same_sequences():
    a = adding(8, 0.0, torch.Generator().manual_seed(3), length=6)
    b = adding(8, 0.0, torch.Generator().manual_seed(3), length=6)
    c = adding(8, 0.0, torch.Generator().manual_seed(4), length=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_the_data_are_signals_with_the_learned_nothing_baseline(make_cfg):
    data = build_data(plain(make_cfg("data=adding", "data.length=30", "data.n_train=2000",
                                     "data.n_test=3000").data))
    spec = data.spec
    assert (spec.kind, spec.task, spec.input_shape, spec.out_features) == \
        ("signal", "regression", (2, 30), 1)
    assert len(data.train) == 1800 and len(data.val) == 200 and len(data.test) == 3000
    baseline = data.facts["baseline"]
    y_train = data.train.y
    for split in ("val", "test"):
        y = getattr(data, split).y
        expected = (y - y_train.mean()).square().mean().item()
        assert baseline[split]["baseline_mse"] == pytest.approx(expected, rel=1e-6)
    assert baseline["test"]["baseline_mse"] == pytest.approx(1 / 6, rel=0.1)


def test_sine_series_is_a_seeded_sum_of_sines():
    a = sine_series(400, [0.01, 0.1], 0.0, seed=0)
    assert a.shape == (400, 1)
    assert np.array_equal(a, sine_series(400, [0.01, 0.1], 0.0, seed=0))
    assert not np.array_equal(a, sine_series(400, [0.01, 0.1], 0.0, seed=1))
    assert np.abs(a).max() <= 2.0 + 1e-9
    noisy = sine_series(20000, [0.05], 0.3, seed=2) - sine_series(20000, [0.05], 0.0, seed=2)
    # (the same seed draws the same phases; the noise comes after them)
    assert noisy.std() == pytest.approx(0.3, rel=0.05)


def test_sine_series_windows_as_data_series_does(make_cfg):
    cfg = make_cfg("data=sine_series", "data.length=1000", "data.window=20", "data.horizon=3")
    data = build_data(plain(cfg.data))
    assert data.spec.kind == "signal" and data.spec.input_shape == (1, 20)
    assert data.spec.out_features == 3
    # split in time: 700 / 150 / 150 steps, each cut into every window of 23 steps
    assert (len(data.train), len(data.val), len(data.test)) == (678, 128, 128)
    naive = data.facts["baseline"]["test"]["naive_rmse"]
    assert 0 < naive < 1


def test_a_sine_series_too_short_for_its_windows_is_refused(make_cfg):
    cfg = make_cfg("data=sine_series", "data.length=100", "data.window=20")
    with pytest.raises(ConfigError, match="the val part of the series has 15 steps"):
        build_data(plain(cfg.data))
