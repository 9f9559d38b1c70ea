"""Field-to-field regression: a target of the input's spatial size, (C_out, H, W) from
(C_in, H, W) images and (C_out, L) from (C_in, L) signals.

The conv families answer it fully convolutionally (a 1x1 conv head at every point, no dense
layer), the MLP and the transformer with all the values of their head reshaped; a field of
another size is one sentence for the conv families.
"""

from __future__ import annotations

import copy
import re

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models import build_model
from dltrain.targets import plain

IMAGE_FIELD = DataSpec("fields", "regression", "image", (1, 12, 12), num_outputs=2 * 144,
                       target_shape=(2, 12, 12))
PLANE_FIELD = DataSpec("planes", "regression", "image", (3, 10, 10), num_outputs=100,
                       target_shape=(10, 10))
SIGNAL_FIELD = DataSpec("waves", "regression", "signal", (3, 20), num_outputs=40,
                        target_shape=(2, 20))
SMALLER = DataSpec("coarse", "regression", "image", (1, 12, 12), num_outputs=36,
                   target_shape=(1, 6, 6))


def build(make_cfg, spec: DataSpec, *overrides: str) -> nn.Module:
    cfg = make_cfg(*overrides)
    return build_model(plain(cfg.model), plain(cfg.init), spec)


@pytest.mark.parametrize("model", ["mlp", "cnn", "resnet", "transformer"])
@pytest.mark.parametrize("spec", [IMAGE_FIELD, PLANE_FIELD, SIGNAL_FIELD], ids=lambda s: s.name)
def test_every_family_outputs_the_target_shape(make_cfg, model, spec):
    overrides = ["model.patch_size=2"] if model == "transformer" and spec.kind == "image" else []
    net = build(make_cfg, spec, f"model={model}", *overrides)
    out = net(torch.randn(5, *spec.input_shape))
    assert tuple(out.shape) == (5, *spec.target_shape)
    out.square().mean().backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_conv_families_map_a_field_point_by_point(make_cfg, model):
    net = build(make_cfg, IMAGE_FIELD, f"model={model}")
    # no dense layer: the head is a 1x1 convolution to the target's 2 channels
    assert not any(isinstance(m, nn.Linear) for m in net.modules())
    assert isinstance(net.head, nn.Conv2d) and net.head.kernel_size == (1, 1)
    assert net.head.out_channels == 2
    # and no pooling that would shrink the maps on the way (the conf's default has one)
    assert not any(isinstance(m, (nn.MaxPool2d, nn.AvgPool2d)) for m in net.modules())
    # locality: an input pixel moves only outputs within the receptive field around it
    net.eval()
    x = torch.randn(1, 1, 12, 12, requires_grad=True)
    net(x)[0, 0, 0, 0].backward()
    assert x.grad[0, 0, 0, 0] != 0 and x.grad[0, 0, 11, 11] == 0


@pytest.mark.parametrize("model", ["cnn", "resnet"])
def test_a_field_of_another_size_is_one_sentence(make_cfg, model):
    with pytest.raises(ConfigError) as err:
        build(make_cfg, SMALLER, f"model={model}")
    assert str(err.value) == (
        f"model={model} maps 12x12 images to fields of the same 12x12 size, but data=coarse "
        "has targets of shape 1x6x6; use model=mlp, which reshapes its output to any target "
        "shape.")
    net = build(make_cfg, SMALLER, "model=mlp")
    assert tuple(net(torch.randn(2, 1, 12, 12)).shape) == (2, 1, 6, 6)


@pytest.mark.parametrize(("override", "says"), [
    ("model.hidden=[16]", "model.hidden=[16] puts dense layers after the maps"),
    ("model.stride=2", "into 3x3 maps, but its field targets need the input's size"),
    ("model.kernel_size=4", "into 14x14 maps, but its field targets need the input's size"),
])
def test_cnn_settings_that_change_a_fields_size_are_refused(make_cfg, override, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        build(make_cfg, IMAGE_FIELD, "model=cnn", override)


def blur_map(x: torch.Tensor) -> torch.Tensor:
    """The target of a field map: 2 · (3x3 box blur of x) + 1 in channel 0, -x in channel 1."""
    kernel = torch.full((1, 1, 3, 3), 1.0 / 9)
    return torch.cat([2 * F.conv2d(x, kernel, padding=1) + 1, -x], dim=1)


@pytest.fixture
def one_thread():
    """A model this small trains fastest on one thread, and leaves shared cores alone."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(("model", "overrides"), [("cnn", ()), ("resnet", ("model.channels=[8]",))])
def test_a_conv_family_learns_a_field_map(make_cfg, one_thread, model, overrides):
    torch.manual_seed(0)
    spec = DataSpec("fields", "regression", "image", (1, 8, 8), num_outputs=128,
                    target_shape=(2, 8, 8))
    x = torch.randn(256, 1, 8, 8)
    y = blur_map(x)
    net = build(make_cfg, spec, f"model={model}", *overrides)
    optimiser = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(100):
        idx = torch.randint(0, len(x), (32,))
        loss = F.mse_loss(net(x[idx]), y[idx])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    net.eval()
    x_new = torch.randn(64, 1, 8, 8)
    with torch.no_grad():
        err = F.mse_loss(net(x_new), blur_map(x_new))
    # the targets' variance is ~0.72 (2 · a 3x3 box blur of unit noise: 4/9; -x: 1), what
    # predicting each channel's mean scores: the map is learned to a few percent of it
    # (measured: cnn 0.007, resnet 0.017)
    assert err < 0.04


@pytest.mark.filterwarnings("ignore:grad and param do not obey")
def test_a_stack_of_field_cnns_computes_what_each_computes_alone(make_cfg):
    from dltrain.vectorised.model import StackedModel, check_layers

    torch.manual_seed(0)
    models = [build(make_cfg, IMAGE_FIELD, "model=cnn", f"trainer.seed={s}") for s in (0, 1)]
    for m in models:
        torch.nn.init.normal_(m.head.weight)  # members that differ
    check_layers(models[0], "cnn")  # only layers the stack's table computes exactly
    stack = StackedModel([copy.deepcopy(m) for m in models], nn.MSELoss(), [],
                         torch.device("cpu"), trace=False)
    x = torch.randn(2, 8, 1, 12, 12)
    y = blur_map(x.flatten(0, 1)).unflatten(0, (2, 8))
    stack.find_dropout_shapes(x[0])
    losses = stack.gradients(x, y, stack.masks([torch.Generator()] * 2), None, None)
    for i, model in enumerate(models):
        loss = nn.MSELoss()(model(x[i]), y[i])
        loss.backward()
        torch.testing.assert_close(losses[i], loss.detach())
        alone = torch.cat([p.grad.flatten() for p in model.parameters()])
        torch.testing.assert_close(stack.grad[i], alone, rtol=1e-5, atol=1e-6)
