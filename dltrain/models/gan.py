"""A generative adversarial network (Goodfellow et al. 2014): a generator G(z) that maps noise
to samples and a discriminator D(x) that tells real samples from generated ones, trained
against each other.

Forms, chosen from the DataSpec as the other families are (or by `model.form`):
- `conv` for images, DCGAN-style (Radford et al. 2016): G projects z to a small feature map
  and doubles it with strided transposed convolutions (batch norm, ReLU), D halves the image
  with strided convolutions (LeakyReLU 0.2, no normalisation: a gradient penalty and spectral
  norm both want none);
- `mlp` for vectors and signals (and images, when asked): dense layers of `width`.

`conditional=True` makes both see the class: G gets the label one-hot beside z, D gets it
as extra input features (constant planes for an image). `spectral_norm=True` divides each of
D's weights by its largest singular value (Miyato et al. 2018), keeping D 1-Lipschitz.

The model owns two parts, `generator` and `discriminator`, each with its own optimiser
(`optim_parts`: the run's optim node with `model.optim.<part>`'s keys), and declares its own
training step (`training_step`): `trainer.d_steps` discriminator steps, then one generator
step. The loop knows neither: it calls the step, logs what it returns and checkpoints the
optimisers as one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError, DivergedError
from dltrain.generation.losses import adversarial, discriminator_wins

if TYPE_CHECKING:
    from dltrain.step_tools import StepTools

FORMS = ("auto", "mlp", "conv")
PARTS = ("generator", "discriminator")


def check_generative(name: str, spec: DataSpec) -> None:
    """Refuse data a generative model cannot learn: it needs task=generation, which needs
    labelled images, vectors or signals (dltrain.data.tasks.with_task)."""
    if spec.task != "generation":
        raise ConfigError(f"model={name} learns to generate samples: it needs task=generation, "
                          f"but data={spec.name} is trained as a {spec.task} task here; add "
                          "task=generation.")


def one_hot(labels: torch.Tensor | None, classes: int, like: torch.Tensor) -> torch.Tensor:
    """(B,) labels -> (B, classes) one-hot in `like`'s dtype; (B, 0) without conditioning."""
    if labels is None or classes == 0:
        return like.new_zeros(like.shape[0], 0)
    return F.one_hot(labels.long(), classes).to(like.dtype)


def _sn(layer: nn.Module, on: bool) -> nn.Module:
    return nn.utils.parametrizations.spectral_norm(layer) if on else layer


class MLPGenerator(nn.Module):
    def __init__(self, latent: int, classes: int, shape: tuple[int, ...], width: int,
                 depth: int) -> None:
        super().__init__()
        self.shape = shape
        layers: list[nn.Module] = []
        size = latent + classes
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.BatchNorm1d(width), nn.ReLU()]
            size = width
        layers.append(nn.Linear(size, math.prod(shape)))
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([z, code], 1)).view(-1, *self.shape)  # (B, *shape)


class MLPDiscriminator(nn.Module):
    def __init__(self, classes: int, shape: tuple[int, ...], width: int, depth: int,
                 spectral: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        size = math.prod(shape) + classes
        for _ in range(depth):
            layers += [_sn(nn.Linear(size, width), spectral), nn.LeakyReLU(0.2)]
            size = width
        layers.append(_sn(nn.Linear(size, 1), spectral))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x.flatten(1), code], 1)).squeeze(1)  # (B,) logits


def _halved(size: int, times: int) -> int:
    """A side after `times` convolutions of kernel 4, stride 2, padding 1."""
    for _ in range(times):
        size = (size + 2 - 4) // 2 + 1
    return size


class ConvGenerator(nn.Module):
    """z -> (C_last, h, w) -> transposed convolutions doubling the side -> (C, H, W), the
    last doubling cropped to the image's size where H or W is not a multiple of 2^levels."""

    def __init__(self, latent: int, classes: int, shape: tuple[int, ...],
                 channels: list[int]) -> None:
        super().__init__()
        c, h, w = shape
        self.shape = shape
        levels = len(channels)
        self.start = (channels[-1], -(-h // 2 ** levels), -(-w // 2 ** levels))
        self.project = nn.Sequential(nn.Linear(latent + classes, math.prod(self.start)),
                                     nn.BatchNorm1d(math.prod(self.start)), nn.ReLU())
        ups: list[nn.Module] = []
        for i in range(levels - 1, 0, -1):
            ups += [nn.ConvTranspose2d(channels[i], channels[i - 1], 4, 2, 1),
                    nn.BatchNorm2d(channels[i - 1]), nn.ReLU()]
        ups.append(nn.ConvTranspose2d(channels[0], c, 4, 2, 1))
        self.up = nn.Sequential(*ups)

    def forward(self, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        h = self.project(torch.cat([z, code], 1)).view(-1, *self.start)
        out = self.up(h)  # (B, C, h·2^levels, w·2^levels)
        _, height, width = self.shape
        return out[..., :height, :width]


class ConvDiscriminator(nn.Module):
    def __init__(self, classes: int, shape: tuple[int, ...], channels: list[int],
                 spectral: bool) -> None:
        super().__init__()
        c, h, w = shape
        layers: list[nn.Module] = []
        size = c + classes  # the label as constant planes beside the image
        for width in channels:
            layers += [_sn(nn.Conv2d(size, width, 4, 2, 1), spectral), nn.LeakyReLU(0.2)]
            size = width
        self.features = nn.Sequential(*layers)
        side = _halved(h, len(channels)) * _halved(w, len(channels))
        self.head = _sn(nn.Linear(channels[-1] * side, 1), spectral)

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        planes = code[:, :, None, None].expand(-1, -1, *x.shape[2:])
        h = self.features(torch.cat([x, planes], 1))
        return self.head(h.flatten(1)).squeeze(1)  # (B,) logits


class GAN(nn.Module):
    """`generator` and `discriminator` for the data of `spec` (see the module's docstring).

    `optim` holds each part's changes to the run's optimiser settings, `{part: {key: value}}`
    (a null value keeps the run's); `forward(x)` is the discriminator's logits for x (the
    generator also runs once, on a zero code, so that a look at every layer sees both).
    """

    def __init__(self, spec: DataSpec, latent: int = 64, form: str = "auto", width: int = 256,
                 depth: int = 2, channels: list[int] | None = None, conditional: bool = False,
                 spectral_norm: bool = False, optim: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        check_generative("gan", spec)
        if form == "auto":
            form = "conv" if spec.kind == "image" else "mlp"
        if form == "conv" and spec.kind != "image":
            raise ConfigError(f"model.form=conv needs images, but data={spec.name} holds "
                              f"{spec.kind}s; use model.form=auto or mlp.")
        if conditional and not spec.num_classes:
            raise ConfigError(f"model.conditional=true needs class labels, and data={spec.name} "
                              "has none; set model.conditional=false.")
        self.latent = int(latent)
        self.classes = int(spec.num_classes or 0) if conditional else 0
        self.conditional = bool(conditional)
        self.optim = {part: dict((optim or {}).get(part) or {}) for part in PARTS}
        shape = tuple(spec.input_shape)
        if form == "conv":
            widths = list(channels or [64, 128])
            self.generator: nn.Module = ConvGenerator(self.latent, self.classes, shape, widths)
            self.discriminator: nn.Module = ConvDiscriminator(self.classes, shape, widths,
                                                              spectral_norm)
        else:
            self.generator = MLPGenerator(self.latent, self.classes, shape, width, depth)
            self.discriminator = MLPDiscriminator(self.classes, shape, width, depth,
                                                  spectral_norm)
        # consecutive steps the discriminator has won outright (not saved: only a warning's
        # count, restarted by a resume, which changes nothing the training computes)
        self.register_buffer("won", torch.zeros((), dtype=torch.long), persistent=False)
        self._steps = 0

    # --- what the trainer and the scorer call ------------------------------------------------

    def optim_parts(self) -> dict[str, tuple[nn.Module, dict[str, Any]]]:
        """Each part with its changes to the run's optimiser settings."""
        return {part: (getattr(self, part), self.optim[part]) for part in PARTS}

    def code(self, labels: torch.Tensor | None, like: torch.Tensor) -> torch.Tensor:
        return one_hot(labels if self.conditional else None, self.classes, like)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Samples for the codes z (B, latent) (and, conditional, the classes (B,))."""
        return self.generator(z, self.code(labels, z))

    def sample(self, n: int, generator: torch.Generator | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """`n` samples from noise drawn with `generator` (the global stream when None)."""
        device = next(self.parameters()).device
        z = torch.randn(n, self.latent, generator=generator, device=device)
        return self.generate(z, labels)

    def criticise(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """The discriminator's logits (B,) for samples x."""
        return self.discriminator(x, self.code(labels, x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.new_zeros(x.shape[0], self.latent)
        labels = x.new_zeros(x.shape[0], dtype=torch.long) if self.conditional else None
        self.generate(z, labels)
        return self.criticise(x, labels)

    @torch.no_grad()
    def validation_loss(self, x: torch.Tensor, y: torch.Tensor, loss: nn.Module,
                        generator: torch.Generator) -> torch.Tensor:
        """The discriminator's loss on real x against as many samples drawn with `generator`
        (no gradient penalty: it needs gradients)."""
        labels = y if self.conditional else None
        fake = self.sample(len(x), generator, labels)
        return adversarial(loss).discriminator_loss(self.criticise(x, labels),
                                                    self.criticise(fake, labels))

    # --- the training step the model declares ------------------------------------------------

    def training_step(self, x: torch.Tensor, y: torch.Tensor, tools: StepTools) -> torch.Tensor:
        """`tools.repeats` discriminator steps on the batch x (each against fresh samples),
        then one generator step. Each part's optimiser steps its part alone: the other's
        weights do not move. Returns the generator's loss (plus 0 × the discriminator's, so
        that a non-finite discriminator loss shows in what the loop checks)."""
        adversary = adversarial(tools.loss)
        labels = y if self.conditional else None
        d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        g_params = [p for p in self.generator.parameters() if p.requires_grad]
        loss_d = x.new_zeros(())
        for _ in range(tools.repeats):
            with torch.no_grad(), tools.amp:
                fake = self.sample(len(x), None, labels)
            with tools.amp:
                loss_d = adversary.discriminator_step_loss(
                    lambda s: self.criticise(s, labels), x, fake)
            tools.zero_grad("discriminator")
            loss_d.backward()
            tools.clip(d_params)
            tools.update("discriminator")
        # the generator's step: the discriminator's weights pass the gradient, keep none
        for p in d_params:
            p.requires_grad_(False)
        try:
            with tools.amp:
                loss_g = adversary.generator_loss(self.criticise(self.sample(len(x), None,
                                                                             labels), labels))
            tools.zero_grad("generator")
            loss_g.backward()
        finally:
            for p in d_params:
                p.requires_grad_(True)
        tools.clip(g_params)
        tools.update("generator")
        self._watch(adversary, loss_d.detach())
        return loss_g.detach() + 0 * loss_d.detach()

    def _watch(self, adversary: nn.Module, loss_d: torch.Tensor) -> None:
        """Count the steps in a row the discriminator has won outright (on the device); every
        CHECK_EVERY steps look (one host sync) and stop a run whose generator gets no signal."""
        verdict = discriminator_wins(adversary)
        if verdict is None:  # a Wasserstein critic has no "outright": its values are unbounded
            return
        threshold, patience, every = verdict
        self.won.copy_((self.won + 1) * (loss_d < threshold))
        self._steps += 1
        if self._steps % every == 0 and int(self.won) >= patience:
            raise DivergedError(
                f"The discriminator won outright: for the last {int(self.won)} steps its loss "
                f"stayed below {threshold} (it told every generated sample from the real ones), "
                "so the generator learns nothing; lower model.optim.discriminator.lr, set "
                "model.spectral_norm=true, or use loss=wgan_gp.")
