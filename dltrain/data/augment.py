"""Batched image augmentation on the training device: one call per batch, no per-sample Python.

`reg=[augment]` sets `data.augment`; build_data turns it into an `Augment`, and the training
batches (never the evaluation ones) pass through it. Every random draw comes from the generator
it is handed, which the batches seed from (seed, epoch, batch): an augmented run resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from dltrain.data.spec import WHOLE, Shard
from dltrain.errors import ConfigError


@dataclass(frozen=True)
class Augment:
    """Random crop with padding, horizontal flip, small rotation and shift, Gaussian noise.

    Images are normalised when they get here, so a blank pixel is not 0: `fill` (one value per
    channel) is what a black pixel became, and it is what padding and the area a rotation or
    shift uncovers are filled with — a digit is padded with background, not with grey.
    """

    # Every transform is off unless asked for; build_augment sets each field from data.augment.
    crop: int = 0  # zero-pad by this many pixels, then crop back at a random offset
    flip: bool = False  # mirror left-right with probability 1/2
    rotate: float = 0.0  # largest rotation, degrees
    translate: float = 0.0  # largest shift, as a fraction of the image's size
    noise: float = 0.0  # std of the Gaussian noise added, in normalised units
    fill: tuple[float, ...] = ()

    def __call__(self, x: torch.Tensor, gen: torch.Generator, shard: Shard = WHOLE
                 ) -> torch.Tensor:
        """The augmented batch: x (B, C, H, W) -> (B, C, H, W).

        `x` is `shard`'s rows of a global batch: every draw is made for the whole batch and
        each row keeps its own, so the shards of all processes are the batch augmented once.
        """
        b, c, h, w = x.shape
        dev = x.device
        draws = _Draws(gen, shard, b * shard.count)
        fill = torch.tensor(self.fill or [0.0] * c, device=dev, dtype=x.dtype).view(1, c, 1, 1)
        x = x - fill  # blank is 0 from here on: zero padding pads with background
        if self.crop:
            p = self.crop
            padded = F.pad(x, (p, p, p, p))  # (B, C, H+2p, W+2p)
            dy, dx = draws.integers(2 * p + 1), draws.integers(2 * p + 1)
            rows = (dy[:, None] + torch.arange(h, device=dev))[:, None, :, None]  # (B,1,H,1)
            cols = (dx[:, None] + torch.arange(w, device=dev))[:, None, None, :]  # (B,1,1,W)
            batch = torch.arange(b, device=dev)[:, None, None, None]
            channel = torch.arange(c, device=dev)[None, :, None, None]
            x = padded[batch, channel, rows, cols]  # (B, C, H, W)
        if self.flip:
            mirrored = draws.uniform(1.0) < 0  # probability 1/2
            x = torch.where(mirrored.view(b, 1, 1, 1), x.flip(-1), x)
        if self.rotate or self.translate:
            x = self._affine(x, draws)
        x = x + fill
        if self.noise:
            x = x + self.noise * draws.normal((c, h, w), x.dtype)
        return x

    def _affine(self, x: torch.Tensor, draws: _Draws) -> torch.Tensor:
        """Rotate by up to ±rotate degrees and shift by up to ±translate, one draw per image."""
        angle = draws.uniform(math.radians(self.rotate))
        # affine_grid spans an image with [-1, 1]: a shift by fraction f is 2f in its units.
        tx, ty = draws.uniform(2 * self.translate), draws.uniform(2 * self.translate)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([torch.stack([cos, -sin, tx], -1),
                             torch.stack([sin, cos, ty], -1)], dim=1)  # (B, 2, 3)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros",
                             align_corners=False)


@dataclass(frozen=True)
class _Draws:
    """Random draws, one per image of the whole batch, of which a shard keeps its rows."""

    gen: torch.Generator
    shard: Shard
    whole: int  # images in the whole batch

    def integers(self, high: int) -> torch.Tensor:
        """One integer in [0, high) per image."""
        return torch.randint(0, high, (self.whole,), generator=self.gen,
                             device=self.gen.device)[self.shard.rows]

    def uniform(self, limit: float) -> torch.Tensor:
        """One number in [-limit, limit) per image."""
        u = torch.rand(self.whole, generator=self.gen, device=self.gen.device)
        return (2 * u[self.shard.rows] - 1) * limit

    def normal(self, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        """A standard normal tensor of `shape` per image."""
        z = torch.randn((self.whole, *shape), generator=self.gen, device=self.gen.device,
                        dtype=dtype)
        return z[self.shard.rows]


def build_augment(node: Mapping[str, Any] | None, name: str, kind: str, mirror_safe: bool,
                  fill: tuple[float, ...]) -> Augment | None:
    """The `Augment` that `data.augment` describes, or None when it is null.

    A node has every key of reg=[augment] (conf/reg/augment.yaml; validation refuses one that
    lacks any). `flip: auto` flips only data sets whose labels survive a mirror image (not
    digits).
    """
    if node is None:
        return None
    if kind != "image":
        held = {"vector": "vectors", "tokens": "token sequences"}.get(kind, f"{kind} data")
        raise ConfigError(f"reg=[augment] augments images, and data={name} holds {held}.")
    flip = node["flip"]
    return Augment(
        crop=int(node["crop"]),
        flip=mirror_safe if flip == "auto" else bool(flip),
        rotate=float(node["rotate"]),
        translate=float(node["translate"]),
        noise=float(node["noise"]),
        fill=tuple(float(v) for v in fill),
    )
