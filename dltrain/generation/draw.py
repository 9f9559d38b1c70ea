"""Samples of a finished run, in the data's own units: `dltrain predict RUN_DIR --samples N`
and the measurement of docs/generation.md.

A run of task=generation samples with its model (`sample`: a GAN from noise, a diffusion
model by denoising); a variational autoencoder (task=reconstruction, model.variational=true)
decodes codes drawn from its prior N(0, I) — the same question asked of both. A conditional
model is asked for every class in turn (0, 1, ..., K−1, 0, ...).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dltrain.errors import ConfigError
from dltrain.io import atomic_write
from dltrain.models.autoencoder import AutoEncoder
from dltrain.probes.reconstruction import denormalise
from dltrain.use.loaded import LoadedRun, pixel_scale

CHUNK = 500


@torch.no_grad()
def model_samples(model: nn.Module, n: int, seed: int, classes: int
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """`n` samples of `model` in its normalised units (and the classes asked for, for a
    conditional model), drawn from a generator seeded with `seed`."""
    from dltrain.generation.score import balanced_labels, generate

    device = next(model.parameters()).device
    if isinstance(model, AutoEncoder):
        if not model.variational:
            raise ConfigError("An autoencoder that is not variational has no prior to sample "
                              "from; --samples needs task=generation or model.variational=true.")
        gen = torch.Generator(device=device).manual_seed(seed)
        was_training = model.training
        model.eval()
        try:
            z = torch.randn(n, model.latent, generator=gen, device=device)
            return torch.cat([model.decode(c) for c in z.split(CHUNK)]), None
        finally:
            model.train(was_training)
    if not hasattr(model, "sample"):
        raise ConfigError("This run's model does not generate samples; --samples needs a run "
                          "of task=generation (model=gan or diffusion) or a VAE.")
    labels = balanced_labels(n, classes, device) if getattr(model, "conditional", False) \
        else None
    return generate(model, n, seed, labels), labels


def in_units(samples: torch.Tensor, run: LoadedRun) -> np.ndarray:
    """Normalised samples back in the data's raw units (pixels as stored: 0-255 for image
    files, 0-1 for glyphs and MNIST as dltrain reads them)."""
    shaped = samples.float().reshape(len(samples), *run.spec.input_shape)
    return (denormalise(shaped, run.norm) * pixel_scale(run.facts)).cpu().numpy()


def write_samples(run: LoadedRun, n: int, seed: int, out: Path | None) -> str:
    """Write `n` samples of `run` to `out` (.npz: `samples` and, conditional, `label`; .png:
    a grid of images), by default RUN_DIR/generated.npz; the sentence that says so."""
    if n < 1:
        raise ConfigError(f"--samples {n} must be at least 1.")
    out = out or run.run_dir / "generated.npz"
    if out.suffix.lower() not in (".npz", ".png"):
        raise ConfigError(f"--out {out}: samples are written as .npz (arrays) or .png (a grid "
                          "of images), chosen by the extension.")
    samples, labels = model_samples(run.model, n, seed, int(run.spec.num_classes or 0))
    if out.suffix.lower() == ".png":
        from dltrain.generation.pictures import picture

        if run.spec.kind != "image":
            raise ConfigError(f"--out {out}: a grid picture needs images; data="
                              f"{run.spec.name} holds {run.spec.kind}s: write .npz.")
        shaped = samples.reshape(len(samples), *run.spec.input_shape)
        png = picture(shaped, run.spec, run.norm, shaped[:0])
        atomic_write(out, lambda f: f.write(png))
        return f"wrote a grid of {n:,} samples to {out} ({run.checkpoint.name})"
    arrays = {"samples": in_units(samples, run)}
    if labels is not None:
        arrays["label"] = labels.cpu().numpy()
        arrays["class"] = np.array(run.spec.class_names, dtype=str)[arrays["label"]] \
            if run.spec.class_names else arrays["label"]
    atomic_write(out, lambda f: np.savez(f, **arrays))
    return f"wrote {n:,} samples to {out} ({run.checkpoint.name})"
