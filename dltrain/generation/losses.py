"""The adversarial losses of a GAN: what its discriminator and its generator minimise.

- `NonSaturating` (loss=auto, the default): the discriminator minimises the binary
  cross-entropy of real against generated samples, softplus(−D(x)) + softplus(D(G(z)));
  the generator minimises −log σ(D(G(z))) = softplus(−D(G(z))) — Goodfellow et al.'s
  "non-saturating" form, whose gradient stays large while the discriminator is winning
  (log(1 − σ(D(G(z)))) would flatten out exactly then).
- `WassersteinGP` (loss=wgan_gp): a critic that estimates the Wasserstein-1 distance,
  E[D(G(z))] − E[D(x)], with the gradient penalty λ·E[(‖∇D(x̂)‖₂ − 1)²] on points x̂
  between real and generated samples (Gulrajani et al. 2017); the generator minimises
  −E[D(G(z))].

A discriminator "wins outright" when its loss stays near zero: it tells every generated
sample from the real ones with certainty and the generator's gradient carries nothing.
`discriminator_wins` says when that counts as a divergence (a critic has no such point).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

# The non-saturating discriminator has won outright when its loss (real and generated
# together) stays below WIN_LOSS (logits beyond about ±5.3) for WIN_STEPS steps in a row;
# it is looked at every CHECK_EVERY steps (one host sync each).
WIN_LOSS = 0.01
WIN_STEPS = 200
CHECK_EVERY = 50


class NonSaturating(nn.Module):
    """The original GAN loss in its non-saturating form (see the module's docstring)."""

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """From the logits of real and generated samples."""
        return F.softplus(-real.float()).mean() + F.softplus(fake.float()).mean()

    def discriminator_step_loss(self, critic: Callable[[torch.Tensor], torch.Tensor],
                                real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        return self.discriminator_loss(critic(real), critic(fake))

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return F.softplus(-fake.float()).mean()


class WassersteinGP(nn.Module):
    """A Wasserstein critic with a gradient penalty of weight `gp_weight` (λ, 10 in the paper)."""

    def __init__(self, gp_weight: float = 10.0) -> None:
        super().__init__()
        self.gp_weight = float(gp_weight)

    def discriminator_loss(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """The critic's loss without its penalty: −(the Wasserstein estimate)."""
        return fake.float().mean() - real.float().mean()

    def discriminator_step_loss(self, critic: Callable[[torch.Tensor], torch.Tensor],
                                real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        loss = self.discriminator_loss(critic(real), critic(fake))
        return loss + self.gp_weight * gradient_penalty(critic, real, fake)

    def generator_loss(self, fake: torch.Tensor) -> torch.Tensor:
        return -fake.float().mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor,
                     fake: torch.Tensor) -> torch.Tensor:
    """E[(‖∇_x̂ D(x̂)‖₂ − 1)²] at x̂ = εx + (1 − ε)x̃, ε ~ U(0, 1) per sample."""
    eps = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device,
                     dtype=real.dtype)
    mixed = (eps * real + (1 - eps) * fake.detach()).requires_grad_(True)
    scores = critic(mixed)
    (grad,) = torch.autograd.grad(scores.sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).square().mean()


def adversarial(loss: nn.Module) -> nn.Module:
    """The adversarial loss a GAN trains with: the run's own where it is one (loss=wgan_gp),
    else the non-saturating loss (loss=auto)."""
    return loss if isinstance(loss, NonSaturating | WassersteinGP) else NonSaturating()


def discriminator_wins(loss: nn.Module) -> tuple[float, int, int] | None:
    """(loss threshold, steps in a row, steps between looks) at which a discriminator trained
    on `loss` has won outright; None for a critic, which has no such point."""
    if isinstance(loss, WassersteinGP):
        return None
    return WIN_LOSS, WIN_STEPS, CHECK_EVERY
