"""Initialised weight variances against the lecture's formulas."""

import math

import pytest
import torch
from torch import nn

from dltrain.models.init import apply_init, fans
from dltrain.targets import plain


def layers() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(400, 300), nn.Linear(300, 500), nn.Conv2d(8, 16, 5))


@pytest.mark.parametrize(
    ("scheme", "variance"),
    [
        ("lecun", lambda fi, fo: 1 / fi),
        ("xavier", lambda fi, fo: 2 / (fi + fo)),
        ("kaiming", lambda fi, fo: 2 / fi),
        ("normal", lambda fi, fo: 0.05**2),
    ],
)
def test_weight_variance_matches_the_formula(scheme, variance):
    model = layers()
    apply_init(model, scheme, std=0.05)
    for layer in model:
        fan_in, fan_out = fans(layer.weight)
        measured = layer.weight.var().item()
        assert measured == pytest.approx(variance(fan_in, fan_out), rel=0.05)
        assert abs(layer.weight.mean().item()) < 0.1 * math.sqrt(measured)
        assert torch.count_nonzero(layer.bias) == 0


def test_orthogonal_rows_are_orthonormal():
    model = nn.Linear(100, 50)
    apply_init(model, "orthogonal")
    w = model.weight
    assert torch.allclose(w @ w.T, torch.eye(50), atol=1e-5)


def test_default_leaves_pytorch_initialisation_alone():
    a, b = layers(), layers()
    apply_init(b, "default")
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_fans_of_linear_and_convolution():
    assert fans(torch.empty(300, 400)) == (400, 300)
    assert fans(torch.empty(16, 8, 5, 5)) == (200, 400)


# Parameters of two or more dimensions that are not linear or conv weights: lookup tables and
# learned tokens, which keep their own initialisation.
_NOT_LAYER_WEIGHTS = ("Embedding", "PositionEmbedding", "ClassToken")


@pytest.mark.parametrize("model_name", ["mlp", "cnn", "resnet", "transformer"])
@pytest.mark.parametrize("kind", ["image", "points", "tokens"])
def test_init_reaches_every_weight_matrix_of_every_model(make_cfg, model_name, kind):
    from dltrain.errors import ConfigError
    from dltrain.models import build_model
    from tests.models.test_models import SPECS

    cfg = make_cfg(f"model={model_name}", "init=normal", "init.std=5.0")
    try:
        model = build_model(plain(cfg.model), plain(cfg.init), SPECS[kind])
    except ConfigError:
        return  # the model does not take this data (tested in test_models)
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    assert layers
    for layer in layers:
        # PyTorch's default draws |w| <= 1/sqrt(fan_in) <= 1; std 5 puts 84% beyond 1
        assert (layer.weight.abs() > 1).float().mean() > 0.5, layer
        assert layer.bias is None or torch.count_nonzero(layer.bias) == 0
    # every other weight matrix belongs to a lookup table or a learned token
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            continue
        for name, p in module.named_parameters(recurse=False):
            assert p.ndim < 2 or type(module).__name__ in _NOT_LAYER_WEIGHTS, (module, name)
