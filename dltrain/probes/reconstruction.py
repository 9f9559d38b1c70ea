"""Pictures of an autoencoder at work, for TensorBoard (task=reconstruction).

After every validation, under `probe/`:
- `reconstructions`: test inputs and, below each row of them, their reconstructions;
- `latent`: the codes of the test set, coloured by the data's own labels (a 1-D or 2-D code
  as it is, a wider one by its first two principal components);
- `prior_samples` (a VAE): codes drawn from the prior N(0, I), decoded;
- `latent_grid` (a 2-D code, images): the decoder's images over a grid of codes — the prior's
  quantiles for a VAE (Kingma & Welling's figure), the middle 90% of the test codes otherwise.

Everything runs in eval mode without gradients, on codes drawn from a generator of its own:
the training's random numbers and batch-norm statistics are left as they were. Images are
pixel grids; points, vectors and signals are drawn with matplotlib (imported here, lazily).
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from dltrain.data.spec import Data, DataSpec
from dltrain.log import Logger
from dltrain.models.autoencoder import AutoEncoder
from dltrain.probes.tags import RECONSTRUCTION, tag
from dltrain.training.hooks import NoHooks
from dltrain.training.state import TrainState

SEED = 0  # of the prior samples: the same codes at every validation, so their images compare
SHOWN = 16  # test inputs shown with their reconstructions
POINTS = 5000  # test codes in the latent picture
SAMPLES = 64  # decoded prior samples
GRID = 15  # codes per side of the latent grid
CHUNK = 1024  # samples per forward pass when encoding the test set


class ReconstructionPictures(NoHooks):
    """Logs the pictures of an autoencoder `model` on `data`'s test split after validations."""

    def __init__(self, model: AutoEncoder, data: Data, logger: Logger) -> None:
        self.model = model
        self.logger = logger
        self.spec = data.spec
        self.x = data.test.x[:POINTS]
        self.labels = None if data.test_labels is None else data.test_labels[:POINTS]
        self.norm = data.norm

    def validated(self, state: TrainState, metrics: Mapping[str, float]) -> None:
        self.draw(state.step)

    @torch.no_grad()
    def draw(self, step: int) -> None:
        """Log every picture of the model as it is now, at `step`."""
        model, spec = self.model, self.spec
        was_training = model.training
        model.eval()
        try:
            codes = torch.cat([model.encode(x)[0] for x in self.x.split(CHUNK)])
            pictures = {"reconstructions": reconstruction_picture(
                self._pixels(self.x[:SHOWN]), self._pixels(model.decode(codes[:SHOWN])), spec)}
            labels = None if self.labels is None else self.labels.cpu()
            pictures["latent"] = latent_picture(codes.float().cpu(), labels, spec)
            if model.variational:
                z = prior_codes(SAMPLES, model.latent, codes.device)
                pictures["prior_samples"] = samples_picture(
                    self._pixels(model.decode(z)), self._pixels(self.x), spec)
            if model.latent == 2 and spec.kind == "image":
                z = grid_codes(codes, GRID, model.variational)
                pictures["latent_grid"] = image_grid(self._pixels(model.decode(z)), GRID)
        finally:
            model.train(was_training)
        for name, picture in pictures.items():
            self.logger.log_image(tag(RECONSTRUCTION, name), picture, step)

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Model-space values back in the data's own units, on the CPU."""
        return denormalise(x.float(), self.norm).cpu()


def denormalise(x: torch.Tensor, norm: Mapping[str, Any]) -> torch.Tensor:
    """x * std + mean with the per-channel (per-feature) statistics of the train split."""
    if not norm:
        return x
    shape = (1, -1, *([1] * (x.ndim - 2)))
    mean = torch.tensor(norm["mean"], device=x.device).view(shape)
    std = torch.tensor(norm["std"], device=x.device).view(shape)
    return x * std + mean


def prior_codes(n: int, latent: int, device: torch.device) -> torch.Tensor:
    """`n` codes from N(0, I), the same at every call (a generator of their own)."""
    gen = torch.Generator().manual_seed(SEED)
    return torch.randn(n, latent, generator=gen).to(device)


def grid_codes(codes: torch.Tensor, n: int, variational: bool) -> torch.Tensor:
    """(n * n, 2) codes on a grid, row by row from the top (the second axis decreasing).

    A VAE's grid is the prior's 5%..95% quantiles on each axis; an autoencoder's, which has
    no prior, spans the middle 90% of its test codes.
    """
    p = torch.linspace(0.05, 0.95, n, device=codes.device)
    if variational:
        axes = [torch.special.ndtri(p)] * 2
    else:
        axes = [torch.quantile(codes[:, j].float(), p) for j in range(2)]
    first, second = torch.meshgrid(axes[0], axes[1].flip(0), indexing="xy")
    return torch.stack([first.flatten(), second.flatten()], dim=1)


def image_grid(images: torch.Tensor, columns: int, pad: int = 2, zoom: int = 1) -> np.ndarray:
    """(N, C, H, W) images in [0, 1] -> one (rows*(H+pad)+pad, ..., 3) uint8 picture, each
    image enlarged `zoom` times (nearest neighbour: the pixels stay pixels)."""
    if zoom > 1:
        images = images.repeat_interleave(zoom, dim=-2).repeat_interleave(zoom, dim=-1)
    n, c, h, w = images.shape
    images = images.clamp(0, 1)
    if c == 1:
        images = images.expand(n, 3, h, w)
    elif c != 3:
        images = images.mean(1, keepdim=True).expand(n, 3, h, w)
    rows = -(-n // columns)
    out = torch.ones(3, rows * (h + pad) + pad, columns * (w + pad) + pad) * 0.5
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        out[:, top:top + h, left:left + w] = image
    return (out.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()


def reconstruction_picture(x: torch.Tensor, recon: torch.Tensor, spec: DataSpec
                           ) -> np.ndarray | bytes:
    """Inputs with their reconstructions: rows of 8 images, each above its reconstructions;
    for other data, a plot of both."""
    if spec.kind == "image":
        rows = []
        for start in range(0, len(x), 8):
            rows += [x[start:start + 8], recon[start:start + 8]]
        return image_grid(torch.cat(rows), 8, zoom=_zoom(spec))
    fig, ax = _figure()
    features = x[0].numel()
    if spec.kind == "vector" and features <= 2:
        if features == 1:
            ax.scatter(x[:, 0], recon[:, 0], s=12)
            ax.set_xlabel("input")
            ax.set_ylabel("reconstruction")
        else:
            for a, b in zip(x, recon, strict=True):
                ax.plot([a[0], b[0]], [a[1], b[1]], color="0.7", lw=0.8)
            ax.scatter(x[:, 0], x[:, 1], s=14, color="0.4", label="input")
            ax.scatter(recon[:, 0], recon[:, 1], s=14, color="C1", label="reconstruction")
            ax.legend(fontsize="small")
    else:
        _curves(ax, x[:4], recon[:4])
    ax.set_title("test inputs and their reconstructions")
    return _png(fig)


def samples_picture(samples: torch.Tensor, data: torch.Tensor, spec: DataSpec
                    ) -> np.ndarray | bytes:
    """Decoded prior samples: a grid of images, or the samples drawn over the data."""
    if spec.kind == "image":
        return image_grid(samples, 8, zoom=_zoom(spec))
    fig, ax = _figure()
    if spec.kind == "vector" and samples[0].numel() == 2:
        ax.scatter(data[:, 0], data[:, 1], s=4, color="0.8", label="test data")
        ax.scatter(samples[:, 0], samples[:, 1], s=14, color="C1", label="prior samples")
        ax.legend(fontsize="small")
    else:
        _curves(ax, samples[:4], None)
    ax.set_title("decoded samples of the prior N(0, I)")
    return _png(fig)


def latent_picture(codes: torch.Tensor, labels: torch.Tensor | None, spec: DataSpec) -> bytes:
    """The test codes, coloured by label: as they are in 1 or 2 dimensions, else their first
    two principal components."""
    fig, ax = _figure()
    d = codes.shape[1]
    if d > 2:
        centred = codes - codes.mean(0)
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        codes = centred @ v[:2].T
        ax.set_xlabel("principal component 1")
        ax.set_ylabel("principal component 2")
        title = f"test codes ({d}-D, first two principal components)"
    elif d == 2:
        ax.set_xlabel("z1")
        ax.set_ylabel("z2")
        title = "test codes"
    else:
        ax.set_xlabel("z")
        title = "test codes"
    discrete = labels is not None and not labels.is_floating_point() and labels.ndim == 1
    if d == 1:  # one axis of codes: the other one spreads the points by label
        spread = labels.float().view(len(codes), -1)[:, 0] if labels is not None \
            else torch.zeros(len(codes))
        y = spread + (torch.rand(len(codes), generator=torch.Generator().manual_seed(SEED))
                      - 0.5) * (0.6 if discrete else 0.0)
        codes = torch.stack([codes[:, 0], y], dim=1)
        ax.set_ylabel("label" if labels is not None else "")
    x, y = codes[:, 0].numpy(), codes[:, 1].numpy()
    if labels is None:
        ax.scatter(x, y, s=3)
    elif discrete:
        names = spec.class_names or tuple(str(k) for k in range(int(labels.max()) + 1))
        cmap = "tab10" if len(names) <= 10 else "tab20"
        points = ax.scatter(x, y, c=labels.numpy(), cmap=cmap, s=3, vmin=-0.5,
                            vmax=len(names) - 0.5)
        handles = [ax.scatter([], [], color=points.cmap(points.norm(k)), s=12, label=name)
                   for k, name in enumerate(names)]
        ax.legend(handles=handles, fontsize="small", markerscale=1.5, loc="center left",
                  bbox_to_anchor=(1.0, 0.5))
    else:  # regression targets: a colour scale of the first one
        values = labels.float().view(len(labels), -1)[:, 0].numpy()
        points = ax.scatter(x, y, c=values, cmap="viridis", s=3)
        fig.colorbar(points, ax=ax, label="target")
    ax.set_title(f"{title} of data={spec.name}")
    return _png(fig)


def _zoom(spec: DataSpec) -> int:
    """Small images (MNIST's 28x28, CIFAR's 32x32) are shown twice their size."""
    return 2 if max(spec.input_shape[1:]) <= 32 else 1


def _curves(ax: Any, x: torch.Tensor, recon: torch.Tensor | None) -> None:
    """A few samples as curves over their values (dashed: their reconstructions)."""
    for i, sample in enumerate(x):
        ax.plot(sample.flatten().numpy(), color=f"C{i}", lw=1.2)
        if recon is not None:
            ax.plot(recon[i].flatten().numpy(), color=f"C{i}", lw=1.2, ls="--")
    ax.set_xlabel("value index")


def _figure() -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # lazy: matplotlib is heavy; no pyplot, no global state

    fig = Figure(figsize=(6.4, 5.0), dpi=100, layout="tight")
    return fig, fig.subplots()


def _png(fig: Any) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png")
    return out.getvalue()
