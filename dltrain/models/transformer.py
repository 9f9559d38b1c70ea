"""A transformer of pre-norm blocks: x + attention(norm(x)), then x + mlp(norm(x)).

How a sample becomes a sequence of tokens (B, T, width) depends on the data:
- tokens (B, T) of ids: an embedding per id; the attention is causal, so position t sees only
  positions <= t, and the model predicts the next token at every position (a GPT-style
  decoder: logits (B, T, vocab)).
- images (C, H, W): ViT patches, non-overlapping `patch_size` squares, each projected
  linearly (a convolution whose kernel and stride are the patch size); by default about a
  4 x 4 grid of them, which on small images is both faster and more accurate than finer ones.
- vectors (F,): one token per feature; signals (C, L): one token per time step.
A learned position embedding tells the tokens apart. Except for language modelling, the
tokens are read out (their mean, or a class token's) into a linear head.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.compat import data_phrase
from dltrain.models.layers import activation as make_activation


class SelfAttention(nn.Module):
    """Multi-head self-attention with its own q, k, v and output projections.

    Plain Linear layers (not nn.MultiheadAttention's fused parameter) so that every
    initialisation scheme reaches them; the attention itself is PyTorch's fused kernel.
    """

    def __init__(self, width: int, heads: int, dropout: float, causal: bool) -> None:
        super().__init__()
        self.heads, self.dropout, self.causal = heads, dropout, causal
        self.q = nn.Linear(width, width)
        self.k = nn.Linear(width, width)
        self.v = nn.Linear(width, width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, D = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(B, T, self.heads, D // self.heads).transpose(1, 2)  # (B, H, T, D/H)

        y = F.scaled_dot_product_attention(
            split(self.q(x)), split(self.k(x)), split(self.v(x)),
            dropout_p=self.dropout if self.training else 0.0, is_causal=self.causal)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))  # (B, T, D)


class Block(nn.Module):
    """Pre-norm: normalising the branch inputs leaves the residual stream x untouched."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, activation: str,
                 dropout: float, causal: bool, norm: str) -> None:
        super().__init__()
        hidden = round(mlp_ratio * width)
        self.norm1 = _norm(norm, width)
        self.attn = SelfAttention(width, heads, dropout, causal)
        self.norm2 = _norm(norm, width)
        self.mlp = nn.Sequential(OrderedDict([
            ("fc1", nn.Linear(width, hidden)),
            ("act", make_activation(activation)),
            ("fc2", nn.Linear(hidden, width)),
        ]))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.dropout(self.attn(self.norm1(x)))
        return x + self.dropout(self.mlp(self.norm2(x)))


def _norm(norm: str, width: int) -> nn.Module:
    return nn.LayerNorm(width) if norm == "layer" else nn.Identity()


class PatchEmbedding(nn.Module):
    """(B, C, H, W) -> (B, H/p * W/p, width): one token per p x p patch."""

    def __init__(self, channels: int, width: int, patch_size: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(channels, width, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class ValueEmbedding(nn.Module):
    """Vectors (B, F) -> (B, F, width), one token per feature value; signals (B, C, L) ->
    (B, L, width), one token per time step of C channel values."""

    def __init__(self, channels: int, width: int) -> None:
        super().__init__()
        self.proj = nn.Linear(channels, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x.unsqueeze(-1) if x.ndim == 2 else x.transpose(1, 2))


class ClassToken(nn.Module):
    """Prepends one learned token that the attention fills with what the head needs."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, 1, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.weight.expand(x.shape[0], -1, -1), x], dim=1)


class PositionEmbedding(nn.Module):
    """A learned vector per position, added to the tokens (B, T, width), T <= length."""

    def __init__(self, length: int, width: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(length, width) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight[: x.shape[1]]


class Readout(nn.Module):
    """(B, T, width) -> (B, width): the mean of the tokens, or the class token."""

    def __init__(self, readout: str) -> None:
        super().__init__()
        self.readout = readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 0] if self.readout == "cls" else x.mean(dim=1)


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n) if n % d == 0]


def auto_patch_size(h: int, w: int) -> int:
    """The patch side that cuts an image into about 4 x 4 patches: the divisor of both sides
    nearest a quarter of the shorter one (7 for 28x28, 8 for 32x32)."""
    target = min(h, w) / 4
    return min([*_divisors(math.gcd(h, w)), 1, math.gcd(h, w)],
               key=lambda d: (abs(d - target), d))


class Transformer(nn.Module):
    """`depth` pre-norm blocks of `width` channels and `heads` attention heads."""

    # no vectorised form (dltrain/vectorised/plan.py says why a transformer runs alone)
    unstackable = "the transformer's attention draws its dropout inside one kernel"

    def __init__(self, spec: DataSpec, *, width: int, depth: int, heads: int,
                 mlp_ratio: float, patch_size: int | None, readout: str, activation: str,
                 dropout: float, norm: str, batchnorm: bool = False) -> None:
        # (conf/model/transformer.yaml has no `batchnorm`: only reg=[batchnorm] sets it, and
        # it is refused here; its absence means false)
        super().__init__()
        if batchnorm:
            raise ConfigError("model=transformer normalises with layer norm (model.norm), not "
                              "batch norm; leave out reg=batchnorm or model.batchnorm=true.")
        if width % heads:
            raise ConfigError(f"model.width={width} does not split into model.heads={heads} "
                              "equal heads; use a width that is a multiple of the heads.")
        causal = spec.kind == "tokens"
        embed: list[tuple[str, nn.Module]]
        if spec.kind == "tokens":
            embed = [("tokens", nn.Embedding(int(spec.vocab_size or 0), width))]
            length = spec.input_shape[0]
        elif spec.kind == "image":
            c, h, w = spec.input_shape
            patch_size = patch_size or auto_patch_size(h, w)
            if h % patch_size or w % patch_size:
                sizes = [str(d) for d in _divisors(math.gcd(h, w))]
                hint = (f"use one that divides {math.gcd(h, w)}: "
                        + (", ".join(sizes[:-1]) + " or " if len(sizes) > 1 else "")
                        + sizes[-1] if sizes else "use model.patch_size=1 or model=cnn")
                raise ConfigError(f"model.patch_size={patch_size} does not divide the "
                                  f"{data_phrase(spec)} of data={spec.name} into whole "
                                  f"patches for model=transformer; {hint}.")
            embed = [("patches", PatchEmbedding(c, width, patch_size))]
            length = (h // patch_size) * (w // patch_size)
        else:  # vectors (F,): F tokens of 1 value; signals (C, L): L tokens of C values
            channels = 1 if spec.kind == "vector" else spec.input_shape[0]
            embed = [("values", ValueEmbedding(channels, width))]
            length = spec.input_shape[-1]
        if readout == "cls" and not causal:
            embed.append(("cls", ClassToken(width)))
            length += 1
        embed.append(("position", PositionEmbedding(length, width)))
        self.embed = nn.Sequential(OrderedDict(embed))
        self.blocks = nn.Sequential(*(Block(width, heads, mlp_ratio, activation, dropout,
                                            causal, norm) for _ in range(depth)))
        self.norm = _norm(norm, width)
        # a language model predicts at every position; the others once per sample
        self.readout = nn.Identity() if causal else Readout(readout)
        # a regression target of several axes: all its values from the readout, reshaped
        self.target_shape = tuple(spec.target_shape)
        self.head = nn.Linear(width, spec.out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(self.blocks(self.embed(x)))  # (B, T, width)
        out = self.head(self.readout(tokens))  # (B, out_features), or (B, T, vocab)
        return out.reshape(out.shape[0], *self.target_shape) if self.target_shape else out
