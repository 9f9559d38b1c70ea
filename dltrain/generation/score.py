"""How a generative run is scored at every validation and at its test: the Fréchet distance
(`fid`) between the features of `trainer.fid_samples` generated samples and of the split's
real ones, the feature network's own accuracy (`feature_accuracy`, what the features are
worth), the model's own loss on the split (a GAN's discriminator loss, a diffusion model's
denoising loss) and, for a conditional model, the accuracy with which the feature network
recognises the class asked for in the samples (`class_accuracy`, and per class
`class_accuracy_<name>`).

The samples come from a generator seeded alike at every validation: the same noise, so that
two validations differ only by the model. Nothing is drawn from the training's random
stream, and the model's mode is put back as it was.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dltrain.data.spec import Data, Split
from dltrain.generation.features import Features, feature_network
from dltrain.generation.fid import Stats, feature_stats, frechet_distance

SEED = 1234  # of the noise scored at every validation
LOSS_SAMPLES = 512  # real samples the model's own loss is measured on
CHUNK = 500  # samples generated at a time


def balanced_labels(n: int, classes: int, device: torch.device) -> torch.Tensor:
    """(n,) class labels, every class as often as n allows: 0, 1, ..., K-1, 0, 1, ..."""
    return torch.arange(n, device=device) % classes


@torch.no_grad()
def generate(model: nn.Module, n: int, seed: int, labels: torch.Tensor | None = None
             ) -> torch.Tensor:
    """`n` samples of a generative model (its `sample(n, generator, labels)`), in eval mode,
    drawn a chunk at a time from a generator seeded with `seed`."""
    device = next(model.buffers(), next(model.parameters())).device
    gen = torch.Generator(device=device).manual_seed(seed)
    was_training = model.training
    model.eval()
    try:
        chunks = []
        for start in range(0, n, CHUNK):
            part = None if labels is None else labels[start:start + CHUNK]
            chunks.append(model.sample(min(CHUNK, n - start), gen, part))  # type: ignore[operator]
    finally:
        model.train(was_training)
    return torch.cat(chunks)


class Scorer:
    """Parts.scorer of a generative run: `scorer(split)` -> its metrics (see the module's
    docstring). The feature network is made at the first scoring (trained, or read from
    `cache`), the real split's statistics once per split."""

    def __init__(self, model: nn.Module, loss: nn.Module, data: Data, samples: int,
                 cache: Path | str | None, device: torch.device) -> None:
        self.model, self.loss, self.data = model, loss, data
        self.samples, self.cache, self.device = int(samples), cache, device
        self.conditional = bool(getattr(model, "conditional", False))
        self._features: Features | None = None
        self._real: dict[int, Stats] = {}

    @property
    def features(self) -> Features:
        if self._features is None:
            self._features = feature_network(self.data, self.cache, self.device)
        return self._features

    def real_stats(self, split: Split) -> Stats:
        if id(split) not in self._real:
            self._real[id(split)] = feature_stats(self.features.of(split.x))
        return self._real[id(split)]

    def __call__(self, split: Split) -> dict[str, float]:
        features = self.features
        classes = int(self.data.spec.num_classes or 0)
        labels = balanced_labels(self.samples, classes, split.x.device) \
            if self.conditional else None
        fake = generate(self.model, self.samples, SEED, labels)
        metrics = {"loss": self.model_loss(split),
                   "fid": frechet_distance(self.real_stats(split),
                                           feature_stats(features.of(fake))),
                   "feature_accuracy": features.accuracy}
        if labels is not None:
            metrics.update(class_accuracy(features.classify(fake), labels,
                                          self.data.spec.class_names, classes))
        return metrics

    def model_loss(self, split: Split) -> float:
        was_training = self.model.training
        self.model.eval()
        try:
            gen = torch.Generator(device=split.x.device).manual_seed(SEED)
            x, y = split.x[:LOSS_SAMPLES], split.y[:LOSS_SAMPLES]
            return float(self.model.validation_loss(x, y, self.loss, gen))  # type: ignore[operator]
        finally:
            self.model.train(was_training)


def class_accuracy(predicted: torch.Tensor, asked: torch.Tensor, names: tuple[str, ...],
                   classes: int) -> dict[str, float]:
    """The share of samples whose class the feature network recognises as the one asked for:
    over all (`class_accuracy`) and per class (`class_accuracy_<name>`)."""
    right = (predicted == asked).double()
    out = {"class_accuracy": float(right.mean())}
    for k in range(classes):
        mine = asked == k
        name = names[k] if k < len(names) else str(k)
        out[f"class_accuracy_{name}"] = float(right[mine].mean()) if mine.any() else 0.0
    return out


def build_scorer(config: Mapping[str, Any], model: nn.Module, loss: nn.Module, data: Data,
                 device: torch.device) -> Scorer:
    """The scorer of a run of `config` (plain): trainer.fid_samples, trainer.fid_cache."""
    trainer = config["trainer"]
    return Scorer(model, loss, data, int(trainer["fid_samples"]), trainer["fid_cache"], device)
