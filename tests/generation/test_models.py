"""The GAN's two-optimiser step, the DDPM's forward process and samplers, the fid."""

from __future__ import annotations

import contextlib

import pytest
import torch

from dltrain.data.spec import DataSpec
from dltrain.errors import DivergedError
from dltrain.generation import losses
from dltrain.generation.fid import feature_stats, frechet_distance
from dltrain.models.diffusion import Diffusion, noise_schedule
from dltrain.models.gan import GAN
from dltrain.optim import PartOptimizers, build_optimizer
from dltrain.training.steps import StepTools

IMAGES = DataSpec("glyphs", "generation", "image", (1, 12, 12), num_classes=3)
POINTS = DataSpec("moons", "generation", "vector", (2,), num_classes=2)
ADAM = {"name": "adam", "_target_": "torch.optim.Adam", "lr": 1e-3, "betas": [0.9, 0.999],
        "eps": 1e-8, "weight_decay": 0.0, "fused": None, "foreach": None}
PARTS = {"generator": {"lr": 2e-3, "betas": [0.5, 0.999]},
         "discriminator": {"lr": 1e-3, "betas": None}}


class Recording(StepTools):
    """StepTools that records which of the model's weights each optimiser step moved."""

    def __init__(self, model: torch.nn.Module, *args) -> None:
        super().__init__(*args)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "moved", [])

    def update(self, part):
        before = {k: v.clone() for k, v in self.model.state_dict().items()}
        super().update(part)
        after = self.model.state_dict()
        changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
        self.moved.append((part, changed))


def gan_and_tools(spec, d_steps: int = 1, conditional: bool = False):
    torch.manual_seed(0)
    model = GAN(spec, latent=8, channels=[4, 8], width=16, depth=1, conditional=conditional,
                optim=PARTS)
    opt = build_optimizer(ADAM, model)
    tools = Recording(model, opt, losses.NonSaturating(), contextlib.nullcontext(),
                      lambda params: None, d_steps)
    return model, opt, tools


@pytest.mark.parametrize("spec", [IMAGES, POINTS], ids=["conv", "mlp"])
def test_each_part_steps_its_own_weights_and_leaves_the_other(spec):
    model, opt, tools = gan_and_tools(spec, d_steps=2, conditional=True)
    assert isinstance(opt, PartOptimizers)
    # each part has the run's optimiser with its own settings (null keeps the run's)
    assert opt.parts["generator"].param_groups[0]["lr"] == 2e-3
    assert opt.parts["generator"].param_groups[0]["betas"] == (0.5, 0.999)
    assert opt.parts["discriminator"].param_groups[0]["betas"] == (0.9, 0.999)
    x = torch.randn(16, *spec.input_shape)
    y = torch.randint(0, spec.num_classes, (16,))
    loss = model.training_step(x, y, tools)
    assert loss.shape == () and torch.isfinite(loss)
    assert [part for part, _ in tools.moved] == ["discriminator", "discriminator", "generator"]
    for part, changed in tools.moved:
        assert changed == {part}, (part, changed)


def test_both_optimisers_round_trip_through_one_state_dict():
    model, opt, tools = gan_and_tools(IMAGES)
    x, y = torch.randn(8, 1, 12, 12), torch.zeros(8, dtype=torch.long)
    model.training_step(x, y, tools)
    state = opt.state_dict()
    assert set(state["parts"]) == {"generator", "discriminator"}
    _, fresh, _ = gan_and_tools(IMAGES)
    fresh.load_state_dict(state)
    for name in ("generator", "discriminator"):
        a, b = opt.parts[name].state_dict()["state"], fresh.parts[name].state_dict()["state"]
        assert a.keys() == b.keys() and all(torch.equal(a[k]["exp_avg"], b[k]["exp_avg"])
                                            for k in a)
    # a schedule over the whole sets each part's rate from that part's own base rate
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.5)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 5e-4]
    assert sched.get_last_lr() == [1e-3, 5e-4]


def test_a_discriminator_that_wins_outright_is_named(monkeypatch):
    monkeypatch.setattr(losses, "WIN_STEPS", 3)
    monkeypatch.setattr(losses, "CHECK_EVERY", 1)
    model, _, tools = gan_and_tools(POINTS)
    with torch.no_grad():  # a discriminator that calls everything near (5, 5) real, rest fake
        last = model.discriminator.net[-1]
        last.weight.zero_()
        last.bias.fill_(-40.0)
    x = torch.full((16, 2), 5.0)

    def certain(samples, labels=None):
        return torch.where((samples - 5).abs().sum(1) < 1e-3, 40.0, -40.0) \
            + 0 * model.discriminator(samples, model.code(labels, samples))

    monkeypatch.setattr(model, "criticise", certain)
    with pytest.raises(DivergedError, match="discriminator won outright"):
        for _ in range(5):
            model.training_step(x, torch.zeros(16, dtype=torch.long), tools)


def test_wgan_gp_penalty_is_zero_for_a_unit_gradient_critic():
    real, fake = torch.randn(32, 5), torch.randn(32, 5)
    w = torch.randn(5)
    w = w / w.norm()  # D(x) = w·x has gradient w, of norm 1 everywhere
    unit = losses.gradient_penalty(lambda s: s @ w, real, fake).item()
    assert unit == pytest.approx(0, abs=1e-10)
    assert losses.gradient_penalty(lambda s: 3 * s @ w, real, fake).item() == pytest.approx(4.0)


# --- the diffusion model ----------------------------------------------------------------------

def test_forward_process_matches_its_closed_form():
    """Noising step by step, x_t = √(1−β_t) x_{t−1} + √β_t ε_t, has after t steps the law
    of the closed form √ᾱ_t x_0 + √(1−ᾱ_t) ε (both schedules)."""
    for schedule in ("linear", "cosine"):
        model = Diffusion(POINTS, timesteps=50, schedule=schedule, ema=0.0)
        betas = noise_schedule(schedule, 50)
        assert torch.allclose(model.alpha_bar.double(), torch.cumprod(1 - betas, 0), atol=1e-6)
        gen = torch.Generator().manual_seed(0)
        x0 = torch.tensor([1.5, -0.5]).expand(200_000, 2)
        x = x0.double()
        for t in range(30):
            x = (1 - betas[t]).sqrt() * x + betas[t].sqrt() * torch.randn(x.shape, generator=gen,
                                                                          dtype=torch.float64)
        t = torch.full((len(x0),), 29)
        closed = model.q_sample(x0, t, torch.randn(x0.shape, generator=gen))
        a = model.alpha_bar[29]
        assert torch.allclose(x.mean(0).float(), a.sqrt() * x0[0], atol=0.01)
        assert torch.allclose(x.var(0).float(), 1 - a, atol=0.01)
        assert torch.allclose(closed.mean(0), x.mean(0).float(), atol=0.01)
        assert torch.allclose(closed.var(0), x.var(0).float(), atol=0.01)


def test_cosine_schedule_ends_in_noise_and_linear_scales_with_timesteps():
    assert noise_schedule("linear", 1000)[[0, -1]].tolist() == pytest.approx([1e-4, 0.02])
    assert noise_schedule("linear", 100)[[0, -1]].tolist() == pytest.approx([1e-3, 0.2])
    a = torch.cumprod(1 - noise_schedule("cosine", 1000), 0)
    assert a[0] > 0.999 and a[-1] < 1e-4


@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
@pytest.mark.parametrize("spec", [IMAGES, POINTS], ids=["unet", "dense"])
def test_samplers_give_the_data_shape_and_repeat_under_a_seed(sampler, spec):
    torch.manual_seed(0)
    model = Diffusion(spec, timesteps=20, sampler=sampler, sample_steps=5, channels=[4, 8],
                      width=16, depth=1, conditional=True).eval()
    labels = torch.arange(6) % spec.num_classes
    chain: list[torch.Tensor] = []
    a = model.sample(6, torch.Generator().manual_seed(3), labels, chain=chain, keep=4)
    b = model.sample(6, torch.Generator().manual_seed(3), labels)
    c = model.sample(6, torch.Generator().manual_seed(4), labels)
    assert a.shape == (6, *spec.input_shape) and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(chain) == 4 and torch.equal(chain[-1], a)
    assert len(model.timestep_sequence()) == (5 if sampler == "ddim" else 20)


def test_the_moving_average_starts_as_the_weights_and_then_lags_them():
    torch.manual_seed(0)
    model = Diffusion(POINTS, timesteps=20, sample_steps=5, width=16, depth=1, ema=0.9)
    opt = build_optimizer(ADAM, model)
    assert all(p.requires_grad for p in model.net.parameters())
    assert not list(model.ema.parameters())  # buffers: no optimiser, no parameter count
    tools = StepTools(opt, torch.nn.MSELoss(), contextlib.nullcontext(), lambda p: None, 1)
    x, y = torch.randn(32, 2), torch.zeros(32, dtype=torch.long)
    model.training_step(x, y, tools)
    first = dict(model.ema.named_buffers())
    for name, p in model.net.named_parameters():
        assert torch.equal(first[name], p)
    model.training_step(x, y, tools)
    name, p = next(iter(model.net.named_parameters()))
    assert not torch.equal(dict(model.ema.named_buffers())[name], p)
    assert int(model.ema_steps) == 2 and model.denoiser() is model.ema


# --- the Fréchet distance ---------------------------------------------------------------------

def test_frechet_distance_against_its_formula_with_scipy():
    linalg = pytest.importorskip("scipy.linalg")
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(500, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(500, 6, generator=gen, dtype=torch.float64) @ torch.randn(
        6, 6, generator=gen, dtype=torch.float64) + 1.0
    sa, sb = feature_stats(a), feature_stats(b)
    covmean = linalg.sqrtm(sa.cov.numpy() @ sb.cov.numpy()).real
    expected = float(((sa.mean - sb.mean) ** 2).sum() + sa.cov.trace() + sb.cov.trace()
                     - 2 * covmean.trace())
    assert frechet_distance(sa, sb) == pytest.approx(expected, rel=1e-6)
    assert frechet_distance(sa, sa) == pytest.approx(0, abs=1e-8)


def test_ancestral_step_is_ho_et_al_s_update_without_a_clamp():
    model = Diffusion(POINTS, timesteps=30, sampler="ancestral", clip=None, ema=0.0)
    x, eps = torch.randn(8, 2), torch.randn(8, 2)
    for t in (0, 7, 29):
        beta, a_bar = model.betas[t], model.alpha_bar[t]
        expected = (x - beta / (1 - a_bar).sqrt() * eps) / (1 - beta).sqrt()
        gen = torch.Generator().manual_seed(t)
        noise = 0 if t == 0 else model.posterior_var[t].sqrt() * torch.randn(
            x.shape, generator=torch.Generator().manual_seed(t))
        assert torch.allclose(model._ancestral(x, eps, t, gen), expected + noise, atol=1e-5)
