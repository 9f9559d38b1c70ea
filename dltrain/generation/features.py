"""The feature network that scores generated samples: a small classifier of the data's own
classes, trained once on the real training split and kept in `trainer.fid_cache/features/`.

Its penultimate layer (FEATURES units) is what the Fréchet distance compares: where
Heusel et al.'s FID uses an Inception network trained on ImageNet, dltrain uses a network
trained on the data being generated, so its numbers compare runs on the same data, not
published FIDs. Its accuracy on the validation split says how much its features know of
the data; the same network, as a classifier, tells which class a generated sample shows.

The file is named by a digest of the training split itself (and the network's version): the
same data finds the same network whatever the config that drew it, other data trains its own.
Training draws from a random stream of its own (seeded, forked from the global one), so
scoring a run never changes what the run trains.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dltrain.data.spec import Data, DataSpec, Split
from dltrain.io import atomic_write

log = logging.getLogger("dltrain")

VERSION = 1  # of the architecture and its training: a change trains new networks
FEATURES = 64  # units of the layer whose statistics the fid compares
EPOCHS = 3
BATCH = 128
LR = 3e-3
SEED = 0
CHUNK = 1000  # samples a forward pass when computing features


class FeatureNet(nn.Module):
    """Images: two conv blocks (16, 32 filters) and a dense layer; vectors and signals: two
    dense layers. Both end in FEATURES ReLU units, then the class logits."""

    def __init__(self, spec: DataSpec) -> None:
        super().__init__()
        shape = tuple(spec.input_shape)
        if spec.kind == "image":
            self.body: nn.Module = nn.Sequential(
                nn.Conv2d(shape[0], 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(32 * 16, FEATURES), nn.ReLU())
        else:
            self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), FEATURES),
                                      nn.ReLU(), nn.Linear(FEATURES, FEATURES), nn.ReLU())
        self.head = nn.Linear(FEATURES, int(spec.num_classes or 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


@dataclass
class Features:
    """A trained feature network (eval mode) and what it is worth."""

    net: FeatureNet
    accuracy: float  # on the data's validation split
    path: Path | None  # where it is kept (None: it could not be written)

    @torch.no_grad()
    def of(self, x: torch.Tensor) -> torch.Tensor:
        """(N, FEATURES) float64 features of samples x, a chunk at a time."""
        return torch.cat([self.net.body(c.float()).double() for c in x.split(CHUNK)])

    @torch.no_grad()
    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """(N,) the class the network sees in each sample."""
        return torch.cat([self.net(c.float()).argmax(1) for c in x.split(CHUNK)])


def digest(data: Data) -> str:
    """What names a feature network's file: the training split's values and labels."""
    h = hashlib.sha256(f"v{VERSION}:{data.spec.name}:{tuple(data.spec.input_shape)}".encode())
    train = data.train
    assert isinstance(train, Split)
    h.update(train.x.detach().float().cpu().contiguous().numpy().tobytes())
    h.update(train.y.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def feature_network(data: Data, cache: Path | str | None, device: torch.device) -> Features:
    """The feature network of `data`: read from `cache`/features/ when it was trained before,
    else trained on the training split (and written there, where the folder can be written).
    Made outside any inference mode its caller is in (an evaluation's): it trains. Building
    it draws from a random stream of its own, trained or read: the caller's random state is
    as it was either way (a resumed run reads what the uninterrupted one trained)."""
    with torch.inference_mode(False), torch.random.fork_rng(devices=[]):
        return _feature_network(data, cache, device)


def _feature_network(data: Data, cache: Path | str | None, device: torch.device) -> Features:
    name = f"{data.spec.name}-{digest(data)}.pt"
    path = None if cache is None else Path(cache) / "features" / name
    if path is not None and path.is_file():
        try:
            saved = torch.load(path, map_location="cpu", weights_only=True)
            net = FeatureNet(data.spec)
            net.load_state_dict(saved["weights"])
            return Features(net.to(device).eval(), float(saved["accuracy"]), path)
        except Exception as err:  # a damaged file is trained again, not trusted
            log.warning(f"{path} could not be read ({type(err).__name__}); training the "
                        "feature network again")
    started = time.perf_counter()
    net, accuracy = train_features(data, device)
    log.info(f"fid feature network trained on data={data.spec.name} in "
             f"{time.perf_counter() - started:.1f} s: {accuracy:.1%} accuracy on the "
             "validation split")
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            payload = {"weights": net.state_dict(), "accuracy": accuracy, "version": VERSION}
            atomic_write(path, lambda f: torch.save(payload, f))
        except OSError as err:
            log.warning(f"the feature network could not be kept in {path.parent} ({err}); "
                        "it is trained again by the next run")
            path = None
    return Features(net, accuracy, path)


def train_features(data: Data, device: torch.device) -> tuple[FeatureNet, float]:
    """A feature network trained on the training split (eval mode), and its accuracy on the
    validation split. It draws from a random stream of its own: the caller's random state is
    as it was."""
    train = data.train
    assert isinstance(train, Split)
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(SEED)
        net = FeatureNet(data.spec).to(device).train()
        optimizer = torch.optim.Adam(net.parameters(), lr=LR)
        order = torch.Generator().manual_seed(SEED)
        n = len(train)
        steps = EPOCHS * -(-n // BATCH)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, LR, total_steps=steps)
        for _ in range(EPOCHS):
            for idx in torch.randperm(n, generator=order).split(BATCH):
                idx = idx.to(train.x.device)
                loss = F.cross_entropy(net(train.x[idx]), train.y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
    net.eval()
    with torch.no_grad():
        correct = sum(int((net(x).argmax(1) == y).sum())
                      for x, y in zip(data.val.x.split(CHUNK), data.val.y.split(CHUNK),
                                      strict=True))
    return net, correct / max(len(data.val), 1)
