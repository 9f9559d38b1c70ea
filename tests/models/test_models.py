"""Every model config in conf/model/ against every kind of data, found by globbing."""

from pathlib import Path

import pytest
import torch

from dltrain.cli import conf_dir
from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models import build_model

MODELS = sorted(p.stem for p in (Path(conf_dir()) / "model").glob("*.yaml"))
SPECS = {
    "image": DataSpec("glyphs", "classification", "image", (1, 28, 28), num_classes=10),
    "points": DataSpec("moons", "classification", "vector", (2,), num_classes=2),
    "regression": DataSpec("sine", "regression", "vector", (1,), num_outputs=1),
    "tokens": DataSpec("text", "language_model", "tokens", (16,), vocab_size=30),
}


def sample_batch(spec: DataSpec, n: int = 4) -> torch.Tensor:
    if spec.kind == "tokens":
        return torch.randint(0, spec.vocab_size, (n, *spec.input_shape))
    return torch.randn(n, *spec.input_shape)


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("kind", list(SPECS))
def test_forward_backward_shape_and_finiteness(make_cfg, model_name, kind):
    spec = SPECS[kind]
    cfg = make_cfg(f"model={model_name}")
    try:
        model = build_model(cfg.model, cfg.init, spec)
    except ConfigError as err:
        # A refusal must be one clear sentence that names the model and the data.
        assert model_name in str(err) and "\n" not in str(err)
        return
    x = sample_batch(spec)
    out = model(x)
    expected = (4, spec.out_features) if spec.kind != "tokens" else (4, 16, spec.vocab_size)
    assert tuple(out.shape) == expected
    assert torch.isfinite(out).all()
    out.float().square().mean().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_mlp_layout_from_hidden_or_depth(make_cfg):
    spec = SPECS["points"]
    by_depth = build_model(make_cfg("model.depth=3", "model.width=7").model,
                           make_cfg().init, spec)
    widths = [m.out_features for m in by_depth.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [7, 7, 7, 2]
    by_list = build_model(make_cfg("model.hidden=[5,3]").model, make_cfg().init, spec)
    widths = [m.out_features for m in by_list.modules() if isinstance(m, torch.nn.Linear)]
    assert widths == [5, 3, 2]


def test_mlp_options_add_their_layers(make_cfg):
    model = build_model(make_cfg("model.dropout=0.3", "model.batchnorm=true",
                                 "model.activation=tanh").model, make_cfg().init, SPECS["points"])
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"Dropout", "BatchNorm1d", "Tanh"} <= kinds
