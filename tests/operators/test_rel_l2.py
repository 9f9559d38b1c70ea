"""loss=rel_l2 and the rel_l2 metric of fields: each sample's relative L2 error, averaged."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dltrain.config import plain
from dltrain.data.spec import DataSpec, TargetScale
from dltrain.errors import ConfigError
from dltrain.losses import MetricTotals, RelativeL2Loss, build_loss, loss_spec


def per_sample(pred: np.ndarray, truth: np.ndarray) -> float:
    err = (pred - truth).reshape(len(pred), -1)
    return float(np.mean(np.linalg.norm(err, axis=1)
                         / np.linalg.norm(truth.reshape(len(truth), -1), axis=1)))


def test_the_loss_is_the_mean_of_each_samples_relative_error():
    torch.manual_seed(0)
    # samples of very different sizes: a pooled ratio would be the large one's alone
    y = torch.randn(4, 1, 8, 8) * torch.tensor([1.0, 10.0, 0.1, 3.0]).view(4, 1, 1, 1)
    out = y + 0.2 * torch.randn(4, 1, 8, 8)
    loss = RelativeL2Loss()(out, y)
    assert float(loss) == pytest.approx(per_sample(out.numpy(), y.numpy()), rel=1e-5)
    pooled = float((out - y).norm() / y.norm())
    assert abs(float(loss) - pooled) > 0.1


def test_field_metrics_average_per_sample_in_the_data_units():
    torch.manual_seed(1)
    scale = TargetScale(torch.zeros(1, 1, 1), torch.full((1, 1, 1), 0.01))
    z = torch.randn(10, 1, 32) * torch.linspace(0.1, 5, 10).view(10, 1, 1)
    zhat = z + 0.3 * torch.randn(10, 1, 32)
    totals = MetricTotals("regression", scale=scale)
    for part in range(0, 10, 4):
        out, y = zhat[part:part + 4], z[part:part + 4]
        totals.update(out, y, RelativeL2Loss()(out, y))
    result = totals.compute()
    expected = per_sample(zhat.double().numpy() * 0.01, z.double().numpy() * 0.01)
    assert result["rel_l2"] == pytest.approx(expected, rel=1e-7)  # (std 0.01 in float32)
    # vectors keep the pooled ratio (one output a sample has no relative error of its own)
    vec = MetricTotals("regression")
    vec.update(zhat[:, 0, :1], z[:, 0, :1], torch.tensor(0.0))
    first, truth = zhat[:, 0, :1].double(), z[:, 0, :1].double()
    pooled = float((first - truth).norm() / truth.norm())
    assert vec.compute()["rel_l2"] == pytest.approx(pooled, rel=1e-9)


def test_rel_l2_is_a_loss_for_values_only(make_cfg):
    node = plain(make_cfg("loss=rel_l2").loss)
    field = DataSpec("darcy", "regression", "image", (1, 8, 8), num_outputs=64,
                     target_shape=(1, 8, 8))
    assert isinstance(build_loss(node, loss_spec(node, field)), RelativeL2Loss)
    labels = DataSpec("moons", "classification", "vector", (2,), num_classes=2)
    with pytest.raises(ConfigError, match="loss=rel_l2 does not fit a classification task"):
        loss_spec(node, labels)
