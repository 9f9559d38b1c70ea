"""Every model config in conf/model/ against every kind of data, found by globbing."""

from pathlib import Path

import pytest
import torch
from torch import nn

from dltrain.cli import conf_dir
from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models import build_model
from dltrain.models.resnet import ResidualBlock
from dltrain.targets import plain

MODELS = sorted(p.stem for p in (Path(conf_dir()) / "model").glob("*.yaml"))
SPECS = {
    "image": DataSpec("glyphs", "classification", "image", (1, 28, 28), num_classes=10),
    "rgb": DataSpec("cifar10", "classification", "image", (3, 32, 32), num_classes=10),
    "points": DataSpec("moons", "classification", "vector", (2,), num_classes=2),
    "regression": DataSpec("sine", "regression", "vector", (1,), num_outputs=1),
    "signal": DataSpec("wave", "classification", "signal", (3, 20), num_classes=4),
    "tokens": DataSpec("text", "language_model", "tokens", (16,), vocab_size=30),
}
# The kinds of data each model of conf/model/ refuses (one sentence, see below) and so the
# ones it must take; a new conf/model/*.yaml fails test_every_model_says_what_it_refuses until
# it is listed here.
REFUSES = {
    "mlp": {"tokens"},
    "cnn": {"points", "regression", "tokens"},
    "resnet": {"tokens"},
    "transformer": set(),
    "rnn": {"points", "regression"},
    # generative models learn task=generation only (tests/generation/)
    "gan": set(SPECS),
    "diffusion": set(SPECS),
    # neural operators map fields to fields of the same size only (tests/operators/)
    "fno": set(SPECS),
    "deeponet": set(SPECS),
}


def sample_batch(spec: DataSpec, n: int = 4) -> torch.Tensor:
    if spec.kind == "tokens":
        return torch.randint(0, spec.vocab_size, (n, *spec.input_shape))
    return torch.randn(n, *spec.input_shape)


def build(make_cfg, spec: DataSpec, *overrides: str) -> nn.Module:
    cfg = make_cfg(*overrides)
    return build_model(plain(cfg.model), plain(cfg.init), spec)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("kind", list(SPECS))
def test_forward_backward_shape_and_finiteness(make_cfg, model_name, kind):
    spec = SPECS[kind]
    cfg = make_cfg(f"model={model_name}")
    refuses = REFUSES[model_name]
    try:
        model = build_model(plain(cfg.model), plain(cfg.init), spec)
    except ConfigError as err:
        # A refusal must be one clear sentence that names the model and the data.
        assert model_name in str(err) and f"data={spec.name}" in str(err)
        assert "\n" not in str(err) and str(err).endswith(".")
        assert kind in refuses, f"model={model_name} refused {kind}"
        return
    assert kind not in refuses, f"model={model_name} accepted {kind}"
    x = sample_batch(spec)
    out = model(x)
    expected = (4, spec.out_features) if spec.kind != "tokens" else (4, 16, spec.vocab_size)
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_every_model_says_what_it_refuses():
    assert set(REFUSES) == set(MODELS), "REFUSES lists exactly the models of conf/model/"
    assert all(set(kinds) <= set(SPECS) for kinds in REFUSES.values())


def test_refusals_say_what_would_work(make_cfg):
    with pytest.raises(ConfigError) as err:
        build(make_cfg, SPECS["points"], "model=cnn")
    assert str(err.value) == ("model=cnn needs images or signals, but data=moons gives 2-D "
                              "points; use model=mlp or model=resnet.")
    with pytest.raises(ConfigError) as err:
        build(make_cfg, SPECS["tokens"], "model=resnet")
    assert "use model=transformer" in str(err.value)


def test_mlp_layout_from_hidden_or_depth(make_cfg):
    spec = SPECS["points"]
    by_depth = build(make_cfg, spec, "model.depth=3", "model.width=7")
    widths = [m.out_features for m in by_depth.modules() if isinstance(m, nn.Linear)]
    assert widths == [7, 7, 7, 2]
    by_list = build(make_cfg, spec, "model.hidden=[5,3]")
    widths = [m.out_features for m in by_list.modules() if isinstance(m, nn.Linear)]
    assert widths == [5, 3, 2]


def test_mlp_options_add_their_layers(make_cfg):
    model = build(make_cfg, SPECS["points"], "model.dropout=0.3", "model.batchnorm=true",
                  "model.activation=tanh")
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"Dropout", "BatchNorm1d", "Tanh"} <= kinds


# --- CNN


def test_cnn_is_2d_for_images_and_1d_for_signals(make_cfg):
    image = build(make_cfg, SPECS["image"], "model=cnn")
    signal = build(make_cfg, SPECS["signal"], "model=cnn")
    assert [type(m) for m in image.modules() if isinstance(m, nn.Conv2d)] == [nn.Conv2d] * 2
    assert [m.in_channels for m in signal.modules() if isinstance(m, nn.Conv1d)] == [3, 16]


def test_cnn_flatten_size_follows_the_blocks(make_cfg):
    # 28 -> pool 14 -> pool 7 -> pool 3 with "same" convolutions: 8 channels of 3x3
    model = build(make_cfg, SPECS["image"], "model=cnn", "model.channels=[4,4,8]")
    assert model.head.in_features == 8 * 3 * 3
    # stride 2 without padding: 28 -> 13 -> 6, no pooling
    model = build(make_cfg, SPECS["image"], "model=cnn", "model.channels=[4,5]",
                  "model.stride=2", "model.padding=0", "model.pooling=none",
                  "model.hidden=[32]")
    assert model.hidden[0].linear.in_features == 5 * 6 * 6
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_cnn_options_add_their_layers(make_cfg):
    model = build(make_cfg, SPECS["image"], "model=cnn", "model.batchnorm=true",
                  "model.pooling=avg", "model.activation=gelu", "model.dropout=0.5")
    kinds = [type(m).__name__ for m in model.modules()]
    assert kinds.count("BatchNorm2d") == 2 and kinds.count("AvgPool2d") == 2
    assert "GELU" in kinds and "Dropout" in kinds and "MaxPool2d" not in kinds
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_cnn_that_shrinks_the_input_to_nothing_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="to nothing in conv block 5"):
        build(make_cfg, SPECS["image"], "model=cnn", "model.channels=[4,4,4,4,4]")


# --- ResNet


def residual_blocks(model: nn.Module) -> list[ResidualBlock]:
    return [m for m in model.modules() if isinstance(m, ResidualBlock)]


def test_resnet_on_vectors_is_a_residual_mlp_whose_skips_carry_the_input(make_cfg):
    model = build(make_cfg, SPECS["points"], "model=resnet", "model.depth=20").eval()
    blocks = residual_blocks(model)
    assert len(blocks) == 20 and all(isinstance(b.shortcut, nn.Identity) for b in blocks)
    # With every branch switched off (last batch-norm scale 0), each block is relu(0 + x):
    # only the skip connections are left, and they pass the (non-negative) stem output on.
    for block in blocks:
        nn.init.zeros_(block.branch.norm2.weight)
        nn.init.zeros_(block.branch.norm2.bias)
    x = torch.randn(8, 2)
    with torch.no_grad():
        stem = model.stem(x)
        assert torch.equal(model.stages(stem), stem)
        assert not torch.equal(model.head(stem), torch.zeros(8, 2))


def test_resnet_on_images_has_stages_with_projection_shortcuts(make_cfg):
    model = build(make_cfg, SPECS["image"], "model=resnet", "model.channels=[8,16,32]",
                  "model.blocks=2")
    blocks = residual_blocks(model)
    assert len(blocks) == 6
    projected = [b for b in blocks if not isinstance(b.shortcut, nn.Identity)]
    # the first block of stages 2 and 3 changes channels and resolution: a strided 1x1 conv
    assert [(b.shortcut.conv.out_channels, b.shortcut.conv.stride) for b in projected] == [
        (16, (2, 2)), (32, (2, 2))]
    shapes = []
    model.stages.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    model(torch.randn(2, 1, 28, 28))
    assert shapes == [(2, 32, 4, 4)]  # 28 -> stem pool 14 -> 7 -> 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == 1 + 6 * 2 + 2


def test_resnet_without_batchnorm_has_none(make_cfg):
    model = build(make_cfg, SPECS["image"], "model=resnet", "model.batchnorm=false")
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
    assert all(m.bias is not None for m in model.modules() if isinstance(m, nn.Conv2d))


# --- Transformer


def test_causal_decoder_does_not_look_ahead(make_cfg):
    spec = SPECS["tokens"]
    torch.manual_seed(0)
    model = build(make_cfg, spec, "model=transformer").eval()
    x = torch.randint(0, spec.vocab_size, (2, 16))
    changed = x.clone()
    changed[:, 10] = (x[:, 10] + 1) % spec.vocab_size
    with torch.no_grad():
        a, b = model(x), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-6)  # the past never sees the future
    assert not torch.allclose(a[:, 10:], b[:, 10:], atol=1e-3)  # the present and future do


def test_image_transformer_attends_across_all_patches(make_cfg):
    spec = SPECS["image"]
    torch.manual_seed(0)
    model = build(make_cfg, spec, "model=transformer", "model.readout=cls").eval()
    assert model.embed.position.weight.shape == (4 * 4 + 1, 64)  # 7x7 patches + class token
    captured = []
    model.blocks[0].register_forward_hook(lambda m, i, o: captured.append(o))
    x = torch.randn(1, 1, 28, 28)
    changed = x.clone()
    changed[..., 24:, 24:] += 1.0  # only the last patch
    with torch.no_grad():
        model(x)
        model(changed)
    # not causal: the class token (position 0) and the first patch see the last patch
    assert not torch.allclose(captured[0][:, :2], captured[1][:, :2], atol=1e-4)


@pytest.mark.parametrize(("kind", "patch_size", "tokens"),
                         [("image", 7, 16), ("rgb", 8, 16), ("image", 2, 196)])
def test_patches_default_to_a_4_by_4_grid(make_cfg, kind, patch_size, tokens):
    chosen = [] if patch_size != 2 else ["model.patch_size=2"]
    model = build(make_cfg, SPECS[kind], "model=transformer", *chosen)
    assert model.embed.patches.proj.kernel_size == (patch_size, patch_size)
    assert model.embed.position.weight.shape[0] == tokens


def test_patch_size_that_does_not_divide_the_image_is_refused(make_cfg):
    with pytest.raises(ConfigError) as err:
        build(make_cfg, SPECS["image"], "model=transformer", "model.patch_size=5")
    assert str(err.value) == ("model.patch_size=5 does not divide the 28x28 images of "
                              "data=glyphs into whole patches for model=transformer; use one "
                              "that divides 28: 2, 4, 7 or 14.")


def test_transformer_attention_has_its_own_projections(make_cfg):
    model = build(make_cfg, SPECS["points"], "model=transformer", "model.depth=3",
                  "model.width=32", "model.heads=8")
    attn = [m for m in model.modules() if type(m).__name__ == "SelfAttention"]
    assert len(attn) == 3 and all(a.heads == 8 for a in attn)
    assert all(isinstance(getattr(a, p), nn.Linear) for a in attn for p in "qkv")
    assert not any(isinstance(m, nn.MultiheadAttention) for m in model.modules())
    assert model.embed.position.weight.shape == (2, 32)  # one token per feature


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.width=30", "model.heads=4"], "model.width=30 does not split into model.heads=4"),
        (["reg=[batchnorm]"], "leave out reg=batchnorm"),
    ],
)
def test_transformer_refuses_settings_it_cannot_build(make_cfg, overrides, message):
    with pytest.raises(ConfigError, match=message):
        build(make_cfg, SPECS["points"], "model=transformer", *overrides)
