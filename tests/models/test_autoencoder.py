"""The encoder–decoder forms (task=reconstruction): every model config against every kind of
data, plain and variational; the KL term and the reparameterisation trick against their
formulas; the refusals."""

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

from dltrain.errors import ConfigError
from dltrain.losses import ReconstructionLoss
from dltrain.models import build_model
from dltrain.models.autoencoder import (
    AutoEncoder,
    Variational,
    kl_standard_normal,
    reparameterise,
)
from dltrain.targets import plain
from tests.models.test_models import MODELS, SPECS, sample_batch

RECONSTRUCTION = {kind: replace(spec, task="reconstruction", num_outputs=None)
                  for kind, spec in SPECS.items()}
# The data each family with an encoder–decoder form takes; a family not listed has none.
AUTOENCODES = {
    "mlp": {"image", "rgb", "points", "regression", "signal"},
    "cnn": {"image", "rgb", "signal"},
}


def build(make_cfg, spec, *overrides):
    cfg = make_cfg(*overrides)
    return build_model(plain(cfg.model), plain(cfg.init), spec)


@pytest.mark.parametrize("variational", [False, True])
@pytest.mark.parametrize("model_name", [m for m in MODELS if m not in ("gan", "diffusion")])
@pytest.mark.parametrize("kind", list(RECONSTRUCTION))
def test_reconstructions_have_the_input_shape(make_cfg, model_name, kind, variational):
    spec = RECONSTRUCTION[kind]
    cfg = make_cfg(f"model={model_name}")
    bottleneck = ["model.latent=3", f"model.variational={variational}"] \
        if "latent" in cfg.model else []
    takes = AUTOENCODES.get(model_name, set())
    torch.manual_seed(0)
    try:
        model = build(make_cfg, spec, f"model={model_name}", *bottleneck)
    except ConfigError as err:
        assert f"model={model_name}" in str(err) and f"data={spec.name}" in str(err)
        assert "\n" not in str(err) and str(err).endswith(".")
        assert kind not in takes, f"model={model_name} refused {kind}"
        return
    assert kind in takes, f"model={model_name} accepted {kind}"
    assert isinstance(model, AutoEncoder) and model.latent == 3
    x = sample_batch(spec)
    out = model(x)
    if variational:
        assert isinstance(out, Variational) and tuple(out.kl.shape) == (4,)
        assert bool((out.kl > 0).all())
        recon = out.x
    else:
        assert isinstance(out, torch.Tensor)
        recon = out
    assert recon.shape == x.shape and torch.isfinite(recon).all()
    mu, logvar = model.encode(x)
    assert tuple(mu.shape) == (4, 3) and (logvar is None) is (not variational)
    assert model.decode(mu).shape == x.shape
    ReconstructionLoss(nn.MSELoss(), beta=1.0)(out, x).backward()
    grads = [p.grad for p in model.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_kl_term_matches_its_closed_form_and_torch_distributions():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0], [0.5, 0.0]])
    var = torch.tensor([[1.0, 1.0], [0.5, 4.0], [1.0, math.e]])
    kl = kl_standard_normal(mu, var.log())
    # ½ Σ (μ² + σ² − 1 − log σ²), dimension by dimension
    expected = torch.tensor([
        0.0,
        0.5 * ((1 + 0.5 - 1 - math.log(0.5)) + (4 + 4 - 1 - math.log(4))),
        0.5 * ((0.25 + 1 - 1 - 0) + (0 + math.e - 1 - 1)),
    ])
    assert torch.allclose(kl, expected, atol=1e-6)
    posterior = torch.distributions.Normal(mu, var.sqrt())
    prior = torch.distributions.Normal(torch.zeros(2), torch.ones(2))
    reference = torch.distributions.kl_divergence(posterior, prior).sum(-1)
    assert torch.allclose(kl, reference, atol=1e-6)


def test_reparameterised_sample_has_the_posterior_distribution_and_its_gradient():
    mu = torch.tensor([[1.5, -0.5]], requires_grad=True)
    logvar = torch.tensor([[math.log(4.0), math.log(0.25)]], requires_grad=True)
    z = reparameterise(mu.expand(200_000, 2), logvar.expand(200_000, 2),
                       torch.Generator().manual_seed(1))
    assert torch.allclose(z.mean(0), mu.detach()[0], atol=0.02)
    assert torch.allclose(z.std(0), torch.tensor([2.0, 0.5]), atol=0.02)
    # z = μ + exp(½ log σ²) ε: dz/dμ = 1 and dz/d log σ² = ½ σ ε
    mu.grad = logvar.grad = None
    z = reparameterise(mu, logvar, torch.Generator().manual_seed(2))
    eps = torch.randn(1, 2, generator=torch.Generator().manual_seed(2))
    z.sum().backward()
    assert torch.equal(mu.grad, torch.ones(1, 2))
    assert torch.allclose(logvar.grad, 0.5 * torch.tensor([[2.0, 0.5]]) * eps)


def test_the_reconstruction_error_alone_trains_the_posterior_variance(make_cfg):
    """Through the sampled code, the decoder's error reaches σ: the code layer's log σ² half
    gets a gradient even with beta=0 (no KL term)."""
    torch.manual_seed(0)
    model = build(make_cfg, RECONSTRUCTION["points"], "model.latent=2",
                  "model.variational=true")
    x = torch.randn(16, 2)
    ReconstructionLoss(nn.MSELoss(), beta=0.0)(model(x), x).backward()
    logvar_rows = model.code.weight.grad[2:]  # the layer gives (μ, log σ²), 2 units each
    assert logvar_rows.abs().sum() > 0


def test_evaluation_is_repeatable_and_leaves_the_random_numbers_alone(make_cfg):
    torch.manual_seed(0)
    model = build(make_cfg, RECONSTRUCTION["image"], "model.latent=2",
                  "model.variational=true")
    x = torch.randn(8, 1, 28, 28)
    model.eval()
    state = torch.get_rng_state()
    a, b = model(x), model(x)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.x, b.x) and torch.equal(a.kl, b.kl)
    mu, _ = model.encode(x)
    assert not torch.allclose(a.x, model.decode(mu))  # a sample, not the posterior mean
    model.train()
    assert not torch.equal(model(x).x, model(x).x)


def test_mlp_autoencoder_mirrors_its_hidden_layers(make_cfg):
    model = build(make_cfg, RECONSTRUCTION["image"], "model.hidden=[64,16]", "model.latent=2")
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [64, 16, 2, 16, 64, 784]
    vae = build(make_cfg, RECONSTRUCTION["image"], "model.hidden=[64,16]", "model.latent=2",
                "model.variational=true")
    assert vae.code.out_features == 4  # μ and log σ²


def test_cnn_decoder_restores_sizes_that_pooling_rounded_down(make_cfg):
    # 28 -> 14 -> 7 -> 3: upsampling goes back to exactly 7, 14 and 28
    model = build(make_cfg, RECONSTRUCTION["image"], "model=cnn", "model.channels=[4,6,8]",
                  "model.latent=5", "model.hidden=[32]")
    ups = [m.size for m in model.modules() if isinstance(m, nn.Upsample)]
    assert ups == [(7, 7), (14, 14), (28, 28)]
    convs = [(m.in_channels, m.out_channels) for m in model.decoder.modules()
             if isinstance(m, nn.Conv2d)]
    assert convs == [(8, 6), (6, 4), (4, 1)]
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 1, 28, 28)
    strided = build(make_cfg, RECONSTRUCTION["signal"], "model=cnn", "model.stride=2",
                    "model.padding=0", "model.pooling=none", "model.latent=2")
    assert strided(torch.randn(2, 3, 20)).shape == (2, 3, 20)


@pytest.mark.parametrize(
    ("spec", "overrides", "message"),
    [
        (RECONSTRUCTION["image"], ["model=mlp"],
         "task=reconstruction makes model=mlp an autoencoder, which needs the width of its "
         "bottleneck for data=glyphs: set model.latent, e.g. model.latent=2."),
        (RECONSTRUCTION["image"], ["model=resnet"],
         "model=resnet has no encoder–decoder form for task=reconstruction (data=glyphs); use "
         "model=mlp or model=cnn."),
        (SPECS["image"], ["model=cnn", "model.latent=2"],
         "model.latent and model.variational make model=cnn an autoencoder, but data=glyphs is "
         "a classification task; add task=reconstruction, or leave model.latent=null and "
         "model.variational=false."),
    ],
)
def test_refusals(make_cfg, spec, overrides, message):
    with pytest.raises(ConfigError) as err:
        build(make_cfg, spec, *overrides)
    assert str(err.value) == message
