"""The noise predictors of a diffusion model: a small U-Net for images and a dense network
for vectors, both told the timestep (a sinusoidal embedding, as in Ho et al. 2020) and,
when conditional, the class (an embedding added to the timestep's).

The U-Net: a residual block at each level (GroupNorm, SiLU, 3x3 convolutions, the timestep
added between them), a strided convolution down between levels, a block in the middle, and
on the way up each level's block sees the upsampled features beside that level's skip
connection. Sides that do not halve evenly (28 -> 14 -> 7 -> 4) are brought back to the
skip's size by interpolation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """(B,) integer timesteps -> (B, dim) sines and cosines of geometrically spaced
    frequencies (the Transformer's position code)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Conditioning(nn.Module):
    """The timestep (and class) as one vector of `dim` that every block is told."""

    def __init__(self, dim: int, classes: int) -> None:
        super().__init__()
        self.dim = dim
        self.time = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.label = nn.Embedding(classes, dim) if classes else None

    def forward(self, t: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        e = self.time(timestep_embedding(t, self.dim))
        if self.label is not None and labels is not None:
            e = e + self.label(labels.long())
        return e  # (B, dim)


def _groups(channels: int) -> int:
    return 8 if channels % 8 == 0 else 1


class ResBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, emb: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(e))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class UNet(nn.Module):
    """(B, C, H, W) noisy images, (B,) timesteps [, (B,) classes] -> (B, C, H, W) noise."""

    def __init__(self, in_channels: int, channels: list[int], classes: int = 0,
                 emb: int = 128) -> None:
        super().__init__()
        self.cond = Conditioning(emb, classes)
        self.stem = nn.Conv2d(in_channels, channels[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.pool = nn.ModuleList()
        c = channels[0]
        for i, width in enumerate(channels):
            self.down.append(ResBlock(c, width, emb))
            c = width
            if i < len(channels) - 1:
                self.pool.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
        self.middle = ResBlock(c, c, emb)
        self.up = nn.ModuleList()
        self.lift = nn.ModuleList()
        for i in range(len(channels) - 1, -1, -1):
            self.up.append(ResBlock(c + channels[i], channels[i], emb))
            c = channels[i]
            if i > 0:
                self.lift.append(nn.Conv2d(c, channels[i - 1], 3, padding=1))
                c = channels[i - 1]
        self.out = nn.Sequential(nn.GroupNorm(_groups(c), c), nn.SiLU(),
                                 nn.Conv2d(c, in_channels, 3, padding=1))

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        e = self.cond(t, labels)
        h = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, e)
            skips.append(h)
            if i < len(self.pool):
                h = self.pool[i](h)
        h = self.middle(h, e)
        for i, block in enumerate(self.up):
            skip = skips.pop()
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = block(torch.cat([h, skip], 1), e)
            if i < len(self.lift):
                h = self.lift[i](h)
        return self.out(h)


class DenseDenoiser(nn.Module):
    """(B, *shape) noisy samples flattened, with the timestep's (and class's) embedding added
    to every hidden layer -> (B, *shape) noise."""

    def __init__(self, shape: tuple[int, ...], width: int, depth: int, classes: int = 0,
                 emb: int = 128) -> None:
        super().__init__()
        self.shape = shape
        self.cond = Conditioning(emb, classes)
        size = math.prod(shape)
        self.inp = nn.Linear(size, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(depth))
        self.emb = nn.ModuleList(nn.Linear(emb, width) for _ in range(depth))
        self.out = nn.Linear(width, size)

    def forward(self, x: torch.Tensor, t: torch.Tensor,
                labels: torch.Tensor | None = None) -> torch.Tensor:
        e = F.silu(self.cond(t, labels))
        h = self.inp(x.flatten(1))
        for layer, proj in zip(self.hidden, self.emb, strict=True):
            h = h + layer(F.silu(h + proj(e)))
        return self.out(F.silu(h)).view(-1, *self.shape)
