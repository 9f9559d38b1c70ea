import math

import pytest
import torch
from torch import nn

from dltrain.config import plain
from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.losses import (
    MetricTotals,
    ReconstructionLoss,
    TokenLoss,
    build_loss,
    loss_spec,
    monitor_metric,
)
from dltrain.models.autoencoder import Variational

CLS = DataSpec("x", "classification", "vector", (2,), num_classes=3)
REG = DataSpec("x", "regression", "vector", (1,), num_outputs=1)
LM = DataSpec("x", "language_model", "tokens", (8,), vocab_size=5)


def test_auto_follows_the_task(make_cfg):
    auto = plain(make_cfg().loss)
    assert isinstance(build_loss(auto, CLS), nn.CrossEntropyLoss)
    assert isinstance(build_loss(auto, REG), nn.MSELoss)
    assert isinstance(build_loss(auto, LM), TokenLoss)


def test_named_losses_are_built_from_their_target(make_cfg):
    loss = build_loss(plain(make_cfg("loss=cross_entropy", "loss.label_smoothing=0.1").loss), CLS)
    assert isinstance(loss, nn.CrossEntropyLoss) and loss.label_smoothing == 0.1
    assert isinstance(build_loss(plain(make_cfg("loss=mse").loss), REG), nn.MSELoss)


def test_token_loss_equals_cross_entropy_over_positions():
    logits, targets = torch.randn(2, 4, 5), torch.randint(0, 5, (2, 4))
    expected = nn.functional.cross_entropy(logits.reshape(8, 5), targets.reshape(8))
    assert torch.allclose(TokenLoss(nn.CrossEntropyLoss())(logits, targets), expected)


def test_classification_totals_match_a_direct_computation():
    torch.manual_seed(0)
    outs, ys = [torch.randn(7, 3), torch.randn(5, 3)], [torch.randint(0, 3, (7,)),
                                                        torch.randint(0, 3, (5,))]
    totals = MetricTotals("classification")
    for out, y in zip(outs, ys, strict=True):
        totals.update(out, y, nn.functional.cross_entropy(out, y))
    result = totals.compute()
    out, y = torch.cat(outs), torch.cat(ys)
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert result["accuracy"] == pytest.approx((out.argmax(1) == y).float().mean().item())


def test_regression_totals_give_mse_and_mae():
    out, y = torch.tensor([[1.0], [2.0], [4.0]]), torch.tensor([[1.0], [3.0], [2.0]])
    totals = MetricTotals("regression")
    totals.update(out, y, nn.functional.mse_loss(out, y))
    result = totals.compute()
    assert result["mse"] == pytest.approx(5 / 3) and result["mae"] == pytest.approx(1.0)
    assert result["loss"] == pytest.approx(5 / 3)


def test_perplexity_is_the_exponential_of_the_token_loss():
    logits, targets = torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long)
    totals = MetricTotals("language_model")
    loss = TokenLoss(nn.CrossEntropyLoss())(logits, targets)
    totals.update(logits, targets, loss)
    result = totals.compute()
    assert result["perplexity"] == pytest.approx(4.0)  # uniform over 4 tokens
    assert result["loss"] == pytest.approx(math.log(4))


def test_monitor_direction():
    assert monitor_metric("classification") == ("val/accuracy", "max")
    assert monitor_metric("regression") == ("val/loss", "min")
    assert monitor_metric("classification", "val/loss") == ("val/loss", "min")


# --- reconstruction


def test_vae_loss_is_the_summed_error_plus_beta_times_kl():
    torch.manual_seed(0)
    x, recon, kl = torch.randn(5, 1, 4, 4), torch.randn(5, 1, 4, 4), torch.rand(5)
    loss = ReconstructionLoss(nn.MSELoss(), beta=0.25)(Variational(recon, kl), x)
    per_sample = (recon - x).square().sum(dim=(1, 2, 3))
    assert loss.item() == pytest.approx((per_sample + 0.25 * kl).mean().item(), rel=1e-6)
    # an autoencoder's output is the reconstruction itself, scored by the inner loss
    assert ReconstructionLoss(nn.MSELoss(), beta=1.0)(recon, x).item() == pytest.approx(
        nn.functional.mse_loss(recon, x).item())


def test_vae_totals_give_recon_kl_and_elbo_per_sample():
    x = [torch.zeros(2, 3), torch.zeros(1, 3)]
    recon = [torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 0.0]]), torch.tensor([[0.0, 0.0, 3.0]])]
    kl = [torch.tensor([0.5, 1.5]), torch.tensor([4.0])]
    totals = MetricTotals("reconstruction")
    loss_fn = ReconstructionLoss(nn.MSELoss(), beta=1.0)
    for xb, rb, kb in zip(x, recon, kl, strict=True):
        out = Variational(rb, kb)
        totals.update(out, xb, loss_fn(out, xb))
    result = totals.compute()
    # squared errors per sample: 2, 4, 9; KL: 0.5, 1.5, 4
    assert result["recon"] == pytest.approx(5.0) and result["kl"] == pytest.approx(2.0)
    assert result["elbo"] == pytest.approx(-7.0) and result["loss"] == pytest.approx(7.0)
    assert result["mse"] == pytest.approx(15 / 9) and result["mae"] == pytest.approx(7 / 9)


def test_build_loss_for_reconstruction_takes_beta_from_loss_auto(make_cfg):
    spec = DataSpec("glyphs", "reconstruction", "image", (1, 28, 28), num_classes=10)
    loss = build_loss(plain(make_cfg("loss.beta=4").loss), spec)
    assert isinstance(loss, ReconstructionLoss) and loss.beta == 4.0
    assert isinstance(loss.inner, nn.MSELoss)
    assert isinstance(build_loss(plain(make_cfg("loss=mae").loss), spec).inner, nn.L1Loss)
    with pytest.raises(ConfigError, match="loss=cross_entropy does not fit a reconstruction"):
        loss_spec(plain(make_cfg("loss=cross_entropy").loss), spec)
