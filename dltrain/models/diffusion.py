"""A denoising diffusion probabilistic model (DDPM, Ho et al. 2020).

The forward process adds Gaussian noise in `timesteps` steps of variance β_t (a linear or a
cosine schedule), so that in closed form, with ᾱ_t = Π_{s≤t} (1 − β_s),

    x_t = √ᾱ_t · x_0 + √(1 − ᾱ_t) · ε,   ε ~ N(0, I).

A network ε_θ(x_t, t) learns to predict ε (the "simple" loss ‖ε − ε_θ(x_t, t)‖², t uniform).
Sampling runs the process backwards from x_T ~ N(0, I):
- ancestral (DDPM): x_{t−1} = (x_t − β_t/√(1−ᾱ_t) · ε_θ) / √α_t + σ_t z, σ_t² the posterior
  variance β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t), through every timestep;
- DDIM (Song et al. 2021, η = 0): deterministic jumps over `sample_steps` evenly spaced
  timesteps, x_{t'} = √ᾱ_{t'} · x̂_0 + √(1 − ᾱ_{t'}) · ε_θ with x̂_0 = (x_t − √(1−ᾱ_t) ε_θ)/√ᾱ_t.

Every prediction of x̂_0 on the way is clamped to ±`clip` (the data are standardised: a few
standard deviations hold them), as Ho et al.'s sampler clamps to the data's [−1, 1]: early,
where √ᾱ_t is tiny, an error in ε_θ would otherwise be multiplied a hundredfold.

Schedules: linear β from 1e-4 to 0.02 at T = 1000 (scaled by 1000/T for other T), or the
cosine schedule of Nichol & Dhariwal (2021), ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s)·π/2).

The network is a small U-Net for images and a dense one for vectors (models/unet.py);
`conditional=True` tells it the class. `ema` keeps an exponential moving average of its
weights (a buffer copy), which sampling uses: averaged weights give markedly better samples
after a short training than the last ones (decay min(ema, (1 + n)/(10 + n)) after n steps).
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.gan import check_generative
from dltrain.models.unet import DenseDenoiser, UNet

if TYPE_CHECKING:
    from dltrain.step_tools import StepTools

SCHEDULES = ("linear", "cosine")
SAMPLERS = ("ddim", "ancestral")


def noise_schedule(name: str, timesteps: int) -> torch.Tensor:
    """β_1..β_T (float64) of the linear or cosine schedule."""
    if name == "linear":
        scale = 1000.0 / timesteps
        return torch.linspace(scale * 1e-4, min(scale * 0.02, 0.999), timesteps,
                              dtype=torch.float64)
    s = 0.008
    steps = torch.arange(timesteps + 1, dtype=torch.float64) / timesteps
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    return (1 - alpha_bar[1:] / alpha_bar[:-1]).clamp(max=0.999)


def _as_buffers(module: nn.Module) -> nn.Module:
    """`module` with its parameters turned into buffers: weights no optimiser sees and no
    parameter count includes, saved with the model all the same."""
    for m in module.modules():
        for name, p in list(m._parameters.items()):
            del m._parameters[name]
            m.register_buffer(name, None if p is None else p.detach().clone())
    return module


class Diffusion(nn.Module):
    """A DDPM for the data of `spec` (see the module's docstring)."""

    def __init__(self, spec: DataSpec, timesteps: int = 1000, schedule: str = "linear",
                 sampler: str = "ddim", sample_steps: int = 50,
                 channels: list[int] | None = None, width: int = 256, depth: int = 3,
                 conditional: bool = False, ema: float = 0.999, clip: float | None = 4.0
                 ) -> None:
        super().__init__()
        check_generative("diffusion", spec)
        if conditional and not spec.num_classes:
            raise ConfigError(f"model.conditional=true needs class labels, and data={spec.name} "
                              "has none; set model.conditional=false.")
        if sampler == "ddim" and sample_steps > timesteps:
            raise ConfigError(f"model.sample_steps={sample_steps} is more than "
                              f"model.timesteps={timesteps}; use at most {timesteps}.")
        self.timesteps, self.sampler, self.sample_steps = int(timesteps), sampler, sample_steps
        self.conditional = bool(conditional)
        self.shape = tuple(spec.input_shape)
        self.clip = None if clip is None else float(clip)
        classes = int(spec.num_classes or 0) if conditional else 0
        if spec.kind == "image":
            self.net: nn.Module = UNet(self.shape[0], list(channels or [32, 64]), classes)
        else:
            self.net = DenseDenoiser(self.shape, width, depth, classes)
        self.ema_decay = float(ema)
        self.ema = _as_buffers(copy.deepcopy(self.net)) if self.ema_decay > 0 else None
        self.register_buffer("ema_steps", torch.zeros((), dtype=torch.long))
        self._averaged: int | None = None  # ema_steps, read once (a host sync) per process
        betas = noise_schedule(schedule, self.timesteps)
        alpha_bar = torch.cumprod(1 - betas, 0)
        prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
        # derived from the config: not saved with the weights
        for name, value in {"betas": betas, "alpha_bar": alpha_bar, "alpha_bar_prev": prev,
                            "posterior_var": betas * (1 - prev) / (1 - alpha_bar)}.items():
            self.register_buffer(name, value.float(), persistent=False)

    # --- the forward process ----------------------------------------------------------------

    def _at(self, values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values[t].view(-1, *([1] * (like.ndim - 1))).to(like.dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: the forward process after t + 1 steps, in one."""
        a = self._at(self.alpha_bar, t, x0)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise

    def denoising_loss(self, net: nn.Module, x0: torch.Tensor, labels: torch.Tensor | None,
                       criterion: nn.Module, generator: torch.Generator | None = None
                       ) -> torch.Tensor:
        """criterion(ε_θ(x_t, t), ε) for t uniform and ε normal, drawn with `generator`."""
        t = torch.randint(0, self.timesteps, (x0.shape[0],), device=x0.device,
                          generator=generator)
        noise = torch.randn(x0.shape, device=x0.device, dtype=x0.dtype, generator=generator)
        return criterion(net(self.q_sample(x0, t, noise), t, labels), noise)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The predicted noise of x taken as x_0 at the first timestep."""
        t = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        return self.net(x, t, self._labels(None, x))

    def _labels(self, labels: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor | None:
        if not self.conditional:
            return None
        return labels if labels is not None else x.new_zeros(x.shape[0], dtype=torch.long)

    # --- training --------------------------------------------------------------------------

    def training_step(self, x: torch.Tensor, y: torch.Tensor, tools: StepTools) -> torch.Tensor:
        """One step of the simple loss on the batch, then the weights' moving average."""
        tools.zero_grad(None)
        with tools.amp:
            loss = self.denoising_loss(self.net, x, self._labels(y, x), tools.loss)
        loss.backward()
        tools.clip([p for p in self.net.parameters() if p.requires_grad])
        tools.update(None)
        self._average()
        return loss.detach()

    @torch.no_grad()
    def _average(self) -> None:
        if self.ema is None:
            return
        if self._averaged is None:
            self._averaged = int(self.ema_steps)
        n = self._averaged
        # the first step copies the weights (an init scheme may have drawn the copy apart)
        decay = 0.0 if n == 0 else min(self.ema_decay, (1 + n) / (10 + n))
        copies = dict(self.ema.named_buffers())
        weights = [(copies[name], p.detach()) for name, p in self.net.named_parameters()]
        torch._foreach_lerp_([c for c, _ in weights], [p for _, p in weights], 1 - decay)
        for name, b in self.net.named_buffers():  # (batch-norm statistics, if any): as they are
            copies[name].copy_(b)
        self._averaged = n + 1
        self.ema_steps.add_(1)

    def denoiser(self) -> nn.Module:
        """The network sampling uses: the averaged weights once there are any."""
        if self.ema is not None and (self._averaged or int(self.ema_steps)) > 0:
            return self.ema
        return self.net

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor, loss: nn.Module,
                        generator: torch.Generator) -> torch.Tensor:
        """The simple loss of the sampling network on x, at timesteps and noise drawn with
        `generator` (the same at every validation)."""
        return self.denoising_loss(self.denoiser(), x, self._labels(y, x), loss, generator)

    # --- sampling ----------------------------------------------------------------------------

    def timestep_sequence(self) -> list[int]:
        """The timesteps sampling visits, from T − 1 down to 0."""
        if self.sampler == "ancestral":
            return list(range(self.timesteps - 1, -1, -1))
        return sorted({round(v) for v in torch.linspace(0, self.timesteps - 1,
                                                        self.sample_steps).tolist()},
                      reverse=True)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None, chain: list[torch.Tensor] | None = None,
               keep: int = 10) -> torch.Tensor:
        """`n` samples from noise drawn with `generator` (the global stream when None); with
        `chain`, about `keep` intermediate x_t of the way are appended to it."""
        net = self.denoiser()
        device = self.betas.device
        x = torch.randn(n, *self.shape, generator=generator, device=device)
        labels = self._labels(labels, x)
        steps = self.timestep_sequence()
        marks = {steps[round(i * (len(steps) - 1) / max(keep - 1, 1))] for i in range(keep)}
        for i, t in enumerate(steps):
            tt = torch.full((n,), t, dtype=torch.long, device=device)
            eps = net(x, tt, labels)
            if self.sampler == "ancestral":
                x = self._ancestral(x, eps, t, generator)
            else:
                x = self._ddim(x, eps, t, steps[i + 1] if i + 1 < len(steps) else -1)
            if chain is not None and t in marks:
                chain.append(x.clone())
        return x

    def _x0(self, x: torch.Tensor, eps: torch.Tensor, t: int) -> torch.Tensor:
        """x̂_0 = (x_t − √(1−ᾱ_t) ε_θ) / √ᾱ_t, clamped to ±clip where the model has one."""
        a = self.alpha_bar[t]
        x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
        return x0 if self.clip is None else x0.clamp(-self.clip, self.clip)

    def _ancestral(self, x: torch.Tensor, eps: torch.Tensor, t: int,
                   generator: torch.Generator | None) -> torch.Tensor:
        # the posterior mean of x_{t−1} given x_t and x̂_0 (without a clamp, the same as
        # (x_t − β_t/√(1−ᾱ_t) ε_θ)/√α_t)
        beta, a_bar, prev = self.betas[t], self.alpha_bar[t], self.alpha_bar_prev[t]
        mean = (prev.sqrt() * beta / (1 - a_bar)) * self._x0(x, eps, t) \
            + ((1 - beta).sqrt() * (1 - prev) / (1 - a_bar)) * x
        if t == 0:
            return mean
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return mean + self.posterior_var[t].sqrt() * z

    def _ddim(self, x: torch.Tensor, eps: torch.Tensor, t: int, t_next: int) -> torch.Tensor:
        a = self.alpha_bar[t]
        a_next = self.alpha_bar[t_next] if t_next >= 0 else torch.ones_like(a)
        x0 = self._x0(x, eps, t)
        if self.clip is not None:  # the noise that x_t holds beside the clamped x̂_0
            eps = (x - a.sqrt() * x0) / (1 - a).sqrt()
        return a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
