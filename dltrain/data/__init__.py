"""build_data(cfg.data, device) -> Data: every data set, split, normalised and on the device."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from dltrain.data import synthetic
from dltrain.data.glyphs import glyphs
from dltrain.data.spec import Data, DataSpec, Split
from dltrain.errors import ConfigError

__all__ = ["SOURCES", "Data", "DataSpec", "Split", "build_data"]

# Test sets of generated data are drawn from this seed, whatever data.seed is, so that runs
# over different training draws are scored on the same test points.
TEST_SEED = 2_147_483_647


@dataclass(frozen=True)
class Source:
    """A generated data set: `make(n, noise, gen, **params)` -> (x, y)."""

    make: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    task: str
    kind: str
    params: tuple[str, ...] = ()  # extra data.* keys handed to `make`
    classes: int | str | None = None  # a number, or the data.* key that holds it
    class_names: tuple[str, ...] = ()


SOURCES: dict[str, Source] = {
    "glyphs": Source(glyphs, "classification", "image", classes=10,
                     class_names=tuple(str(d) for d in range(10))),
    "moons": Source(synthetic.moons, "classification", "vector", classes=2),
    "circles": Source(synthetic.circles, "classification", "vector", ("factor",), classes=2),
    "spirals": Source(synthetic.spirals, "classification", "vector", ("classes", "turns"),
                      classes="classes"),
    "blobs": Source(synthetic.blobs, "classification", "vector", ("classes",),
                    classes="classes"),
    "sine": Source(synthetic.sine, "regression", "vector", ("periods",)),
    "poly": Source(synthetic.poly, "regression", "vector", ("coefficients", "x_range")),
}


def _draw(source: Source, cfg: DictConfig, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    params = {k: OmegaConf.to_object(cfg[k]) if OmegaConf.is_config(cfg[k]) else cfg[k]
              for k in source.params if k in cfg}
    return source.make(n, float(cfg.noise), torch.Generator().manual_seed(seed), **params)


def _standardise(train: torch.Tensor, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of the training inputs: per feature for vectors, per channel for images."""
    dims = (0,) if kind == "vector" else tuple(d for d in range(train.ndim) if d != 1)
    mean = train.mean(dim=dims, keepdim=True)
    std = train.std(dim=dims, keepdim=True).clamp_min(1e-6)
    return mean, std


def build_data(cfg: DictConfig, device: torch.device | str = "cpu") -> Data:
    """Make or load the data set named by `cfg.name`, split it, normalise it, move it to `device`.

    The training pool (`n_train` samples) is split into train and validation by
    `val_fraction`; normalisation statistics come from the train split alone.
    """
    if cfg.name not in SOURCES:
        raise ConfigError(f"data={cfg.name} is not a known data set "
                          f"(options: {', '.join(SOURCES)}).")
    source = SOURCES[cfg.name]
    x_pool, y_pool = _draw(source, cfg, int(cfg.n_train), int(cfg.seed))
    x_test, y_test = _draw(source, cfg, int(cfg.n_test), TEST_SEED)
    n_val = round(len(x_pool) * float(cfg.val_fraction))
    if n_val < 1 or n_val >= len(x_pool):
        raise ConfigError(f"data.val_fraction={cfg.val_fraction} of data.n_train={cfg.n_train} "
                          "leaves no validation or no training samples.")
    x_train, x_val = x_pool[:-n_val], x_pool[-n_val:]
    y_train, y_val = y_pool[:-n_val], y_pool[-n_val:]

    mean, std = _standardise(x_train, source.kind)
    splits = [
        Split(((x - mean) / std).to(device), y.to(device))
        for x, y in ((x_train, y_train), (x_val, y_val), (x_test, y_test))
    ]
    classes = cfg[source.classes] if isinstance(source.classes, str) else source.classes
    spec = DataSpec(
        name=str(cfg.name),
        task=source.task,
        kind=source.kind,
        input_shape=tuple(x_train.shape[1:]),
        num_classes=int(classes) if classes is not None else None,
        num_outputs=None if source.task == "classification" else int(y_train.shape[1]),
        class_names=source.class_names,
    )
    norm = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    return Data(*splits, spec=spec, norm=norm)
