"""probe=[field]: which data it draws, and what it draws (in the data's units)."""

from __future__ import annotations

import pytest
import torch

from dltrain.data.spec import Data, DataSpec, Split, TargetScale
from dltrain.errors import ConfigError
from dltrain.probes.build import check_probes
from dltrain.probes.field import operator_picture, operator_rows, refusal

SIGNALS = DataSpec("burgers_operator", "regression", "signal", (1, 16), num_outputs=16,
                   target_shape=(1, 16))


def test_it_draws_fields_and_refuses_the_rest():
    assert refusal(SIGNALS) is None
    assert refusal(DataSpec("f", "regression", "image", (2, 8, 8), num_outputs=64,
                            target_shape=(8, 8))) is None
    moons = DataSpec("moons", "classification", "vector", (2,), num_classes=2)
    with pytest.raises(ConfigError, match=r"^probe=\[field\] draws fields .*data=moons is not "
                       r"such data \(use data=darcy"):
        check_probes({"probe": {"every": 10, "batch": 8, "field": {}}}, moons)


def test_rows_are_in_the_data_units_and_the_picture_is_a_png():
    x = torch.randn(5, 1, 16)
    y = torch.randn(5, 1, 16)
    scale = TargetScale(torch.zeros(1, 1, 1), torch.full((1, 1, 1), 0.5))
    split = Split(x, y)
    data = Data(split, split, split, spec=SIGNALS, norm={"mean": [2.0], "std": [3.0]},
                target_scale=scale)
    doubled = torch.nn.Conv1d(1, 1, 1, bias=False)
    torch.nn.init.constant_(doubled.weight, 2.0)
    rows = operator_rows(doubled, data, 3)
    assert torch.allclose(torch.from_numpy(rows.inputs), (x[:3, 0] * 3 + 2).double())
    assert torch.allclose(torch.from_numpy(rows.truth), (y[:3, 0] * 0.5).double())
    assert torch.allclose(torch.from_numpy(rows.error), ((2 * x - y)[:3, 0] * 0.5).double(),
                          atol=1e-6)
    assert operator_picture(rows, "test").startswith(b"\x89PNG")
