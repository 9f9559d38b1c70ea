"""build_data(cfg.data, device) -> Data: every data set, split, normalised and on the device.

`SOURCES` names every data set `data=NAME` can pick: generated ones (made here from a seed),
image files (vision.py) and text files (text.py). Each entry builds its own `Data` from the
`data` node, read as a plain mapping (`cfg["key"]`): every key has its default in conf/data/
and its check in dltrain.config.RULES, so none is defaulted again here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from dltrain.data import synthetic
from dltrain.data.adding import adding, mean_guess_mse
from dltrain.data.arrays import ArrayFiles
from dltrain.data.augment import build_augment
from dltrain.data.glyphs import glyphs
from dltrain.data.images import ImageFolder
from dltrain.data.memory import out_of_memory_refused, refuse_unless_room
from dltrain.data.operators import SOURCES as OPERATORS
from dltrain.data.operators import OperatorSource
from dltrain.data.prepare import n_validation, standardise
from dltrain.data.series import SeriesFile
from dltrain.data.sine_series import SineSeries
from dltrain.data.spec import Data, DataSpec, HostSplit, Split
from dltrain.data.table import TableFile
from dltrain.data.text import TINY_SHAKESPEARE, TextFile
from dltrain.data.vision import CIFAR10, FASHION_MNIST, MNIST, ImageFiles
from dltrain.errors import ConfigError

__all__ = ["SOURCES", "Data", "DataSpec", "Generated", "HostSplit", "Split", "build_data"]
from dltrain.data.spec import TEST_SEED


@dataclass(frozen=True)
class Generated:
    """A generated data set: `make(n, noise, gen, **params)` -> (x, y)."""

    make: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    task: str
    kind: str
    params: tuple[str, ...] = ()  # extra data.* keys handed to `make` (its conf/data/ has them)
    classes: int | str | None = None  # a number, or the data.* key that holds it
    class_names: tuple[str, ...] = ()
    mirror_safe: bool = True  # whether a mirror image keeps its label (for reg=[augment])
    # memory the draw holds at its peak, per byte of the samples it returns (its temporaries:
    # measured 3.8 for moons, 3.0 for spirals, 1.2 for glyphs, which renders in chunks)
    peak: float = 4.0
    # (training targets, a split's targets) -> the learned-nothing baseline the summary shows
    # beside that split's metrics (Data.facts["baseline"]), e.g. the adding problem's mse
    baseline: Callable[[torch.Tensor, torch.Tensor], dict[str, float]] | None = None

    def draw(self, cfg: Mapping[str, Any], n: int, seed: int
             ) -> tuple[torch.Tensor, torch.Tensor]:
        params = {k: cfg[k] for k in self.params}
        return self.make(n, float(cfg["noise"]), torch.Generator().manual_seed(seed), **params)

    def check_room(self, cfg: Mapping[str, Any], device: torch.device | str) -> None:
        """Refuse a data.n_train (or n_test) whose samples cannot fit in memory, before any
        is drawn: the bytes of one sample (two drawn to see), times the samples asked for,
        times what the draw holds at its peak (`peak`)."""
        x, y = self.draw(cfg, 2, 0)
        each = (x[0].numel() * x.element_size()) + (y[0].numel() * y.element_size())
        n_train, n_test = int(cfg["n_train"]), int(cfg["n_test"])
        key, n = ("n_train", n_train) if n_train >= n_test else ("n_test", n_test)
        # drawn on the host, the pool first, then the test set beside it; then moved
        drawn = each * max(self.peak * n_train, n_train + self.peak * n_test)
        on_device = each * (n_train + n_test)
        refuse_unless_room(round(on_device if torch.device(device).type == "cuda" else drawn),
                           f"data.{key}={n} ({each} bytes a sample of data={cfg['name']}, "
                           "and the draw's working memory)",
                           device, f"use a smaller data.{key}", host=round(drawn))

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        """Draw the training pool (`n_train` samples) and the test set, carve validation from
        the pool by `val_fraction`, normalise with the train split's statistics alone.
        """
        self.check_room(cfg, device)
        x_pool, y_pool = self.draw(cfg, int(cfg["n_train"]), int(cfg["seed"]))
        x_test, y_test = self.draw(cfg, int(cfg["n_test"]), TEST_SEED)
        n_val = n_validation(len(x_pool), float(cfg["val_fraction"]),
                             f"data.n_train={cfg['n_train']}")
        x_train, x_val = x_pool[:-n_val], x_pool[-n_val:]
        y_train, y_val = y_pool[:-n_val], y_pool[-n_val:]

        mean, std = standardise(x_train, self.kind)
        # In place: the drawn tensors are ours, and a copy of an image set is its size again.
        x_pool.sub_(mean).div_(std)
        x_test.sub_(mean).div_(std)
        splits = [Split(x.to(device), y.to(device))
                  for x, y in ((x_train, y_train), (x_val, y_val), (x_test, y_test))]
        classes = cfg[self.classes] if isinstance(self.classes, str) else self.classes
        spec = DataSpec(
            name=str(cfg["name"]),
            task=self.task,
            kind=self.kind,
            input_shape=tuple(x_train.shape[1:]),
            num_classes=int(classes) if classes is not None else None,
            num_outputs=None if self.task == "classification" else int(y_train.shape[1]),
            class_names=self.class_names,
        )
        norm = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
        blank = tuple((-mean / std).flatten().tolist())  # what a zero input becomes
        augment = build_augment(cfg["augment"], spec.name, self.kind, self.mirror_safe, blank)
        facts = {"baseline": {"val": self.baseline(y_train, y_val),
                              "test": self.baseline(y_train, y_test)}} if self.baseline else {}
        return Data(*splits, spec=spec, norm=norm, augment=augment, facts=facts)


SOURCES: dict[str, Generated | ImageFiles | TextFile | TableFile | ImageFolder | ArrayFiles
              | SeriesFile | SineSeries | OperatorSource] = {
    "glyphs": Generated(glyphs, "classification", "image", classes=10,
                        class_names=tuple(str(d) for d in range(10)), mirror_safe=False,
                        peak=1.25),
    "moons": Generated(synthetic.moons, "classification", "vector", classes=2),
    "circles": Generated(synthetic.circles, "classification", "vector", ("factor",), classes=2),
    "spirals": Generated(synthetic.spirals, "classification", "vector", ("classes", "turns"),
                         classes="classes"),
    "blobs": Generated(synthetic.blobs, "classification", "vector", ("classes",),
                       classes="classes"),
    "sine": Generated(synthetic.sine, "regression", "vector", ("periods",)),
    "poly": Generated(synthetic.poly, "regression", "vector", ("coefficients", "x_range")),
    "adding": Generated(adding, "regression", "signal", ("length",), baseline=mean_guess_mse),
    "sine_series": SineSeries(),
    "mnist": MNIST,
    "fashion_mnist": FASHION_MNIST,
    "cifar10": CIFAR10,
    "text": TextFile(),
    "tiny_shakespeare": TINY_SHAKESPEARE,
    "table": TableFile(),
    "arrays": ArrayFiles(),
    "series": SeriesFile(),
    "images": ImageFolder(),
    **OPERATORS,  # darcy, burgers_operator: generated by PDE solvers, cached in data.root
}


def build_data(cfg: Mapping[str, Any], device: torch.device | str = "cpu") -> Data:
    """Make or read the data set named by `cfg["name"]`, split it, normalise it, move it to
    `device`. Missing or bad input is a ConfigError, raised before anything trains.
    """
    name = str(cfg["name"])
    if name not in SOURCES:
        raise ConfigError(f"data={name} is not a known data set "
                          f"(options: {', '.join(SOURCES)}).")
    # an allocation that fails despite the checks (Generated.check_room) is one sentence too
    with out_of_memory_refused(f"data={name} does not fit in memory",
                               "use a smaller data.n_train, or data.in_memory=false where the "
                               "data set streams"):
        return SOURCES[name].build(cfg, device)
