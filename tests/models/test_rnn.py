"""model=rnn: what it reads of every kind of data, its gradients, its refusals, its init, and
the step-by-step form the gradients probe differentiates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.choices import CELLS
from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models import build_model
from dltrain.models.rnn import CELLS as TORCH_CELLS
from dltrain.models.rnn import RNN
from dltrain.targets import plain

SPECS = {
    "image": DataSpec("glyphs", "classification", "image", (1, 28, 28), num_classes=10),
    "rgb": DataSpec("cifar10", "classification", "image", (3, 8, 6), num_classes=10),
    "signal": DataSpec("adding", "regression", "signal", (2, 12), num_outputs=1),
    "series": DataSpec("series", "regression", "signal", (3, 10), num_outputs=6),
    "field": DataSpec("wave", "regression", "signal", (3, 10), num_outputs=20,
                      target_shape=(2, 10)),
    "image_field": DataSpec("maps", "regression", "image", (1, 5, 4), num_outputs=40,
                            target_shape=(2, 5, 4)),
    "tokens": DataSpec("text", "language_model", "tokens", (16,), vocab_size=30),
}
EXPECTED = {"image": (4, 10), "rgb": (4, 10), "signal": (4, 1), "series": (4, 6),
            "field": (4, 2, 10), "image_field": (4, 2, 5, 4), "tokens": (4, 16, 30)}


def batch(spec: DataSpec, n: int = 4, dtype=torch.float32) -> torch.Tensor:
    if spec.kind == "tokens":
        return torch.randint(0, spec.vocab_size, (n, *spec.input_shape))
    return torch.randn(n, *spec.input_shape, dtype=dtype)


def build(make_cfg, spec: DataSpec, *overrides: str) -> nn.Module:
    cfg = make_cfg("model=rnn", *overrides)
    return build_model(plain(cfg.model), plain(cfg.init), spec)


def test_the_cells_are_the_configs():
    assert tuple(TORCH_CELLS) == CELLS


def test_defaults_are_a_one_layer_lstm_of_128(make_cfg):
    model = build(make_cfg, SPECS["signal"])
    assert isinstance(model.rnn, nn.LSTM) and model.rnn.hidden_size == 128
    assert model.rnn.num_layers == 1 and not model.rnn.bidirectional


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", list(SPECS))
def test_shapes_for_every_data_kind(make_cfg, cell, kind):
    spec = SPECS[kind]
    bidirectional = kind != "tokens"
    model = build(make_cfg, spec, f"model.cell={cell}", "model.hidden_size=8", "model.layers=2",
                  f"model.bidirectional={str(bidirectional).lower()}", "model.dropout=0.1")
    assert isinstance(model.rnn, TORCH_CELLS[cell])
    out = model(batch(spec))
    assert tuple(out.shape) == EXPECTED[kind]
    out.square().mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_an_image_is_read_row_by_row(make_cfg):
    # (C, H, W) = (3, 8, 6): 8 steps of 3 * 6 values; a change in row 5 leaves the states of
    # rows 0-4 as they were
    model = build(make_cfg, SPECS["rgb"], "model.hidden_size=8").eval()
    assert model.rnn.input_size == 18
    x = batch(SPECS["rgb"], 2)
    y = x.clone()
    y[:, :, 5] += 1.0
    states_x = model.rnn(model.steps(x))[0]
    states_y = model.rnn(model.steps(y))[0]
    assert torch.equal(states_x[:, :5], states_y[:, :5])
    assert not torch.allclose(states_x[:, 5], states_y[:, 5])


def test_a_language_model_is_causal(make_cfg):
    model = build(make_cfg, SPECS["tokens"], "model.hidden_size=8").eval()
    x = batch(SPECS["tokens"], 2)
    y = x.clone()
    y[:, 10] = (y[:, 10] + 1) % 30
    assert torch.equal(model(x)[:, :10], model(y)[:, :10])
    assert not torch.allclose(model(x)[:, 10], model(y)[:, 10])


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", ["image", "signal", "field", "tokens"])
def test_gradcheck_in_float64(cell, kind):
    """Autograd's gradient against finite differences, through every kind of input: the
    inputs' (the embedding's for tokens) and every weight's."""
    spec = {"image": DataSpec("glyphs", "classification", "image", (1, 4, 3), num_classes=3),
            "signal": SPECS["signal"], "field": SPECS["field"],
            "tokens": DataSpec("text", "language_model", "tokens", (5,), vocab_size=7)}[kind]
    if kind == "signal":
        spec = DataSpec("adding", "regression", "signal", (2, 5), num_outputs=1)
    if kind == "field":
        spec = DataSpec("wave", "regression", "signal", (2, 5), num_outputs=10,
                        target_shape=(2, 5))
    torch.manual_seed(0)
    model = RNN(spec, cell=cell, hidden_size=3, layers=2, bidirectional=kind != "tokens",
                dropout=0.0).double()
    names = [n for n, _ in model.named_parameters()]
    x = batch(spec, 2, torch.float64)
    inputs = [p.detach().clone().requires_grad_() for p in model.parameters()]
    if kind != "tokens":
        inputs.append(x.clone().requires_grad_())

    def f(*tensors):
        params = dict(zip(names, tensors[:len(names)], strict=True))
        given = tensors[len(names)] if kind != "tokens" else x
        return torch.func.functional_call(model, params, (given,))

    assert torch.autograd.gradcheck(f, tuple(inputs), eps=1e-6, atol=1e-5,
                                    fast_mode=True)


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("kind", ["rgb", "field", "tokens", "image_field"])
def test_unrolled_is_the_fused_forward(make_cfg, cell, kind):
    spec = SPECS[kind]
    bidirectional = str(kind != "tokens").lower()
    model = build(make_cfg, spec, f"model.cell={cell}", "model.hidden_size=6", "model.layers=2",
                  f"model.bidirectional={bidirectional}", "model.dropout=0.5").eval()
    x = batch(spec)
    out, states = model.unrolled(x)
    steps = spec.input_shape[1] if spec.kind == "image" else spec.input_shape[-1]
    assert len(states) == steps and all(len(s) == 2 * (1 + (kind != "tokens")) for s in states)
    assert torch.allclose(out, model(x), atol=1e-5)


@pytest.mark.parametrize(("kind", "words"), [
    ("points", "model=rnn needs sequences (signals, images read row by row, or text), but "
               "data=moons gives 2-D points; use model=mlp, or data=series or data=sine_series "
               "for a time series."),
    ("regression", "but data=sine gives 1-D points"),
])
def test_vectors_are_refused_in_one_sentence(make_cfg, kind, words):
    spec = {"points": DataSpec("moons", "classification", "vector", (2,), num_classes=2),
            "regression": DataSpec("sine", "regression", "vector", (1,), num_outputs=1)}[kind]
    with pytest.raises(ConfigError) as err:
        build(make_cfg, spec)
    assert words in str(err.value) and "\n" not in str(err.value)


def test_a_bidirectional_language_model_is_refused(make_cfg):
    with pytest.raises(ConfigError) as err:
        build(make_cfg, SPECS["tokens"], "model.bidirectional=true")
    message = str(err.value)
    assert message.startswith("model.bidirectional=true would let model=rnn read")
    assert "data=text" in message and message.endswith("use model.bidirectional=false.")


def test_batchnorm_is_refused(make_cfg):
    with pytest.raises(ConfigError, match="model=rnn has no batch norm"):
        build(make_cfg, SPECS["signal"], "reg=[batchnorm]")


def test_bad_keys_are_refused_by_the_rules(make_cfg):
    from dltrain.config import validate

    with pytest.raises(ConfigError, match=r"model.cell=lstn must be one of: lstm, gru, rnn; "
                                          r"did you mean lstm\?"):
        validate(make_cfg("model=rnn", "model.cell=lstn"))
    with pytest.raises(ConfigError, match=r"model.hidden_size=0 must be a whole number >= 1"):
        validate(make_cfg("model=rnn", "model.hidden_size=0"))


def test_orthogonal_init_makes_every_recurrent_gate_orthogonal(make_cfg):
    model = build(make_cfg, SPECS["signal"], "model.hidden_size=16", "model.layers=2",
                  "init=orthogonal")
    eye = torch.eye(16)
    for layer in range(2):
        w_hh = getattr(model.rnn, f"weight_hh_l{layer}").detach()
        for gate in w_hh.split(16):  # the LSTM's input, forget, cell and output gates
            assert torch.allclose(gate @ gate.T, eye, atol=1e-5)
        assert torch.equal(getattr(model.rnn, f"bias_hh_l{layer}"), torch.zeros(64))
    default = build(make_cfg, SPECS["signal"], "model.hidden_size=16")
    gate = default.rnn.weight_hh_l0.detach()[:16]
    assert not torch.allclose(gate @ gate.T, eye, atol=1e-2)  # PyTorch's own: uniform


def test_lecun_init_scales_each_gate_by_its_fan_in(make_cfg):
    torch.manual_seed(0)
    model = build(make_cfg, SPECS["signal"], "model.hidden_size=256", "model.cell=gru",
                  "init=lecun")
    w_hh = model.rnn.weight_hh_l0.detach()
    assert w_hh.std().item() == pytest.approx((1 / 256) ** 0.5, rel=0.02)


def test_dropout_sits_between_layers_and_before_the_head(make_cfg):
    model = build(make_cfg, SPECS["signal"], "model.layers=3", "model.dropout=0.25")
    assert model.rnn.dropout == 0.25 and isinstance(model.dropout, nn.Dropout)
    one = build(make_cfg, SPECS["signal"], "model.dropout=0.25")
    assert one.rnn.dropout == 0.0 and one.dropout.p == 0.25  # (torch drops between layers)
