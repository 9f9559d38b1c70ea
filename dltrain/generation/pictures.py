"""Pictures of a generative model, after every validation: a grid of samples from the same
noise each time (TensorBoard `probe/generation/samples`, and RUN_DIR/samples.png), a row per
class for a conditional model; for a diffusion model also the denoising chain of a few
samples, from noise (left) to sample (right) (`probe/generation/chain`, RUN_DIR/chain.png).

Images are pixel grids; vectors are drawn over the real data (matplotlib, imported lazily).
Sampling runs in eval mode from a generator of its own: training is left as it was.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dltrain.data.spec import Data, DataSpec
from dltrain.io import atomic_write
from dltrain.log import Logger
from dltrain.probes.reconstruction import denormalise, image_grid
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState

SEED = 0  # of the grid's noise: the same at every validation, so the pictures compare
COLUMNS = 8  # samples a row (per class for a conditional model)
MAX_ROWS = 10
CHAIN = 4  # samples whose denoising chain is shown
TAG = "probe/generation"


def png_bytes(picture: np.ndarray) -> bytes:
    """A (H, W, 3) uint8 picture as a PNG file's bytes (zlib; no imaging library)."""
    h, w, _ = picture.shape
    raw = b"".join(b"\x00" + picture[row].tobytes() for row in range(h))

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)  # 8 bits, RGB
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def grid_labels(spec: DataSpec, conditional: bool, device: torch.device
                ) -> torch.Tensor | None:
    """A conditional model's grid: a row per class (the first MAX_ROWS), COLUMNS each."""
    if not conditional:
        return None
    classes = min(int(spec.num_classes or 1), MAX_ROWS)
    return torch.arange(classes, device=device).repeat_interleave(COLUMNS)


def picture(samples: torch.Tensor, spec: DataSpec, norm: Mapping, real: torch.Tensor,
            columns: int = COLUMNS) -> bytes:
    """Samples (in the model's normalised units) as a PNG: a grid of images, or for vectors
    the first two values of each over the real data's."""
    pixels = denormalise(samples.float(), norm).cpu()
    if spec.kind == "image":
        zoom = 2 if max(spec.input_shape[1:]) <= 32 else 1
        return png_bytes(image_grid(pixels, columns, zoom=zoom))
    from matplotlib.figure import Figure  # lazy: matplotlib is heavy

    fig = Figure(figsize=(5.0, 5.0), dpi=100, layout="tight")
    ax = fig.subplots()
    flat, data = pixels.flatten(1), denormalise(real.float(), norm).cpu().flatten(1)
    if flat.shape[1] >= 2:
        ax.scatter(data[:, 0], data[:, 1], s=4, color="0.8", label="real")
        ax.scatter(flat[:, 0], flat[:, 1], s=10, color="C1", label="generated")
        ax.legend(fontsize="small")
    else:
        ax.hist([data[:, 0].numpy(), flat[:, 0].numpy()], bins=40, label=["real", "generated"])
    ax.set_title(f"samples of data={spec.name}")
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()


class SamplePictures(NoHooks):
    """Draws the pictures of the module's docstring after every validation."""

    def __init__(self, model: nn.Module, data: Data, logger: Logger, run_dir: Path) -> None:
        self.model, self.data, self.logger, self.run_dir = model, data, logger, Path(run_dir)
        self.conditional = bool(getattr(model, "conditional", False))

    def validated(self, state: TrainState, metrics: Mapping[str, float]) -> None:
        self.draw(state.step)

    @torch.no_grad()
    def draw(self, step: int) -> None:
        model, spec, norm = self.model, self.data.spec, self.data.norm
        device = self.data.val.x.device
        labels = grid_labels(spec, self.conditional, device)
        n = len(labels) if labels is not None else COLUMNS * COLUMNS
        gen = torch.Generator(device=device).manual_seed(SEED)
        chain: list[torch.Tensor] = []
        was_training = model.training
        model.eval()
        try:
            samples = model.sample(n, gen, labels)  # type: ignore[operator]
            if hasattr(model, "timestep_sequence") and spec.kind == "image":
                gen = torch.Generator(device=device).manual_seed(SEED)
                first = None if labels is None else labels[:: max(len(labels) // CHAIN, 1)][:CHAIN]
                model.sample(CHAIN, gen, first, chain=chain)  # type: ignore[operator]
        finally:
            model.train(was_training)
        pictures = {"samples": picture(samples, spec, norm, self.data.val.x[:2000])}
        if chain:
            steps = torch.stack(chain, 1).flatten(0, 1)  # (CHAIN * steps, ...): a row a sample
            pictures["chain"] = picture(steps, spec, norm, self.data.val.x, len(chain))
        for name, png in pictures.items():
            self.logger.log_image(f"{TAG}/{name}", png, step)
            atomic_write(self.run_dir / f"{name}.png", lambda f, png=png: f.write(png))
