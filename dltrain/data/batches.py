"""Batches of device-resident tensors: index slices of a per-epoch permutation.

No DataLoader, no per-sample Python, no collate: a batch is `x[idx], y[idx]` for a slice `idx`
of one `randperm` per epoch. The permutation of epoch `e` comes from a generator seeded with
(seed, e) alone, so any epoch's order can be rebuilt from two integers — which is what makes
resuming in the middle of an epoch exact.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch

from dltrain.data.spec import Data, Split


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that orders epoch `epoch` of a run seeded with `seed`.

    torch's CPU generator keeps only 32 bits of its seed, so (seed, epoch) is hashed into 32
    bits rather than packed side by side (which would give every seed the same orders).
    """
    digest = hashlib.blake2b(f"{seed}:{epoch}".encode(), digest_size=4).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little"))


class ShuffledBatches:
    """Training batches: every sample once per epoch, in a reproducible random order.

    The last incomplete batch is dropped (its samples come first in some later epoch), so
    every step sees the same batch size; a split smaller than one batch is one batch.
    """

    def __init__(self, split: Split, batch_size: int, seed: int) -> None:
        self.split = split
        self.batch_size = min(batch_size, len(split))
        self.seed = seed

    def __len__(self) -> int:
        return len(self.split) // self.batch_size

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of `epoch`, on the data's device."""
        perm = torch.randperm(len(self.split), generator=epoch_generator(self.seed, epoch))
        return perm.to(self.split.x.device)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch`, from batch number `start` on."""
        perm, b, x, y = self.order(epoch), self.batch_size, self.split.x, self.split.y
        for i in range(start, len(self)):
            idx = perm[i * b:(i + 1) * b]
            yield x[idx], y[idx]


def sequential_batches(split: Split, batch_size: int
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Evaluation batches: the split in order, the last batch possibly smaller."""
    for i in range(0, len(split), batch_size):
        yield split.x[i:i + batch_size], split.y[i:i + batch_size]


def train_batches(data: Data, batch_size: int, seed: int) -> ShuffledBatches:
    """The training batches of a data set, ordered by `seed` (the trainer's seed)."""
    return ShuffledBatches(data.train, batch_size, seed)
