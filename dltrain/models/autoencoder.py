"""The encoder–decoder form of a model family: an autoencoder, or a variational one.

An autoencoder learns NN(x) ≈ x through a bottleneck of `latent` units (d ≪ n): the encoder
maps an input to its code z, the decoder maps z back to the input's shape. Trained on
‖NN(x) − x‖², the code keeps what the reconstruction needs most (a linear one finds the
principal subspace).

A variational autoencoder (Kingma & Welling, 2014) encodes a Gaussian posterior
q(z|x) = N(μ(x), diag σ²(x)) instead of one code, decodes a sample of it drawn by the
reparameterisation trick z = μ + σ·ε, ε ~ N(0, I) (so the gradient flows through μ and σ),
and is trained on the negative evidence lower bound −ELBO = −E_q[log p(x|z)] + KL(q(z|x) ‖ N(0, I)).
Its forward pass returns a `Variational` pair — the reconstruction and each sample's KL term —
which the reconstruction loss and the metrics read; the trainer sees one output like any other.

The families build their encoder and decoder (mlp.py, cnn.py); what they share is here.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError

# A VAE's eval-mode forward draws its sample from a generator of its own with this seed, so
# that evaluating is repeatable (the summary's test metrics equal `dltrain eval`'s) and never
# moves the random numbers the training draws from.
EVAL_SEED = 0


class Variational(NamedTuple):
    """A VAE's output: the reconstruction of a sampled code, and each sample's KL term."""

    x: torch.Tensor  # (B, *input_shape)
    kl: torch.Tensor  # (B,) KL(q(z|x) ‖ N(0, I)) in nats


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, diag σ²) ‖ N(0, I)) per sample, in closed form: ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²).

    mu, logvar: (B, d) -> (B,), computed in float32 whatever the autocast precision.
    """
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.square() + logvar.exp() - 1.0 - logvar).sum(-1)


def reparameterise(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """z = μ + σ·ε with ε ~ N(0, I): a sample of N(μ, σ²) that is differentiable in μ and σ."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def bottleneck(latent: int | None, variational: bool, family: str, spec: DataSpec) -> int:
    """The width of the code, refusing an autoencoder without one."""
    if latent is None:
        kind = "a variational autoencoder" if variational else "an autoencoder"
        raise ConfigError(f"task=reconstruction makes model={family} {kind}, which needs the "
                          f"width of its bottleneck for data={spec.name}: set model.latent, "
                          "e.g. model.latent=2.")
    return int(latent)


class AutoEncoder(nn.Module):
    """encoder (x -> (B, features)) -> code layer -> `latent` units -> decoder (z -> x̂).

    The code layer gives the code itself, or μ and log σ² of the posterior when variational.
    `encode` and `decode` are there for pictures of the code space and for generating.
    """

    def __init__(self, encoder: nn.Module, features: int, decoder: nn.Module, latent: int,
                 variational: bool) -> None:
        super().__init__()
        self.latent = latent
        self.variational = variational
        self.encoder = encoder
        self.code = nn.Linear(features, 2 * latent if variational else latent)
        self.decoder = decoder

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(code, None), or (μ, log σ²) of the posterior: each (B, latent)."""
        h = self.code(self.encoder(x))
        if not self.variational:
            return h, None
        mu, logvar = h.chunk(2, dim=-1)
        return mu, logvar

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent) -> (B, *input_shape)."""
        return self.decoder(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor | Variational:
        mu, logvar = self.encode(x)
        if logvar is None:
            return self.decode(mu)  # (B, *input_shape)
        generator = None
        if not self.training:  # repeatable evaluation, the training's random numbers untouched
            generator = torch.Generator(device=mu.device).manual_seed(EVAL_SEED)
        z = reparameterise(mu, logvar, generator)
        return Variational(self.decode(z), kl_standard_normal(mu, logvar))
