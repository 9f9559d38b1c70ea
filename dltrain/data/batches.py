"""Batches of device-resident tensors: index slices of a per-epoch permutation.

No DataLoader, no per-sample Python, no collate: a batch is `x[idx], y[idx]` for a slice `idx`
of one `randperm` per epoch. The permutation of epoch `e` comes from a generator seeded with
(seed, e) alone, so any epoch's order can be rebuilt from two integers — which is what makes
resuming in the middle of an epoch exact.

Every kind of training batches here has the same small interface — `len(batches)` is the
batches of one epoch, `batches.epoch(e, start)` yields (x, y) from batch `start` on,
`batches.batch_size` is the size of every batch — and the same reproducibility: random windows
of a token stream (WindowBatches), a split streamed from the host through a DataLoader
(StreamedBatches), and any of them augmented (AugmentedBatches). `train_batches` picks the
one a data set needs.

In a data-parallel job every process draws the same global batches and keeps its `Shard` of
each, rows index, index + count, ...: it picks its rows before it gathers, loads or augments
anything, so no process does the work of the others.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import torch

from dltrain.data.spec import WHOLE, Augmentation, Data, HostSplit, Shard, Split
from dltrain.errors import ConfigError
from dltrain.runtime import derived_seed

Batch = tuple[torch.Tensor, torch.Tensor]


class Batches(Protocol):
    batch_size: int  # of the global batch; a shard yields batch_size // count rows of it

    def __len__(self) -> int: ...

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]: ...


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator that orders epoch `epoch` of a run seeded with `seed`."""
    return torch.Generator().manual_seed(derived_seed(seed, epoch))


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The order (a permutation of range(n), on the CPU) of epoch `epoch`."""
    return torch.randperm(n, generator=epoch_generator(seed, epoch))


class ShuffledBatches:
    """Training batches: every sample once per epoch, in a reproducible random order.

    The last incomplete batch is dropped (its samples come first in some later epoch), so
    every step sees the same batch size; a split smaller than one batch is one batch.
    """

    def __init__(self, split: Split, batch_size: int, seed: int, shard: Shard = WHOLE) -> None:
        self.split = split
        self.batch_size = min(batch_size, len(split))
        self.seed = seed
        self.shard = shard

    def __len__(self) -> int:
        return len(self.split) // self.batch_size

    def order(self, epoch: int) -> torch.Tensor:
        """The sample order of `epoch`, on the data's device."""
        return epoch_order(len(self.split), self.seed, epoch).to(self.split.x.device)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of `epoch`, from batch number `start` on."""
        n, b, x, y = len(self), self.batch_size, self.split.x, self.split.y
        rows = self.order(epoch)[:n * b].view(n, b)[:, self.shard.rows]  # batch i is rows[i]
        for i in range(start, n):
            idx = rows[i]
            yield x[idx], y[idx]


def sequential_batches(split: Split, batch_size: int
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Evaluation batches: the split in order, the last batch possibly smaller."""
    for i in range(0, len(split), batch_size):
        yield split.x[i:i + batch_size], split.y[i:i + batch_size]


class WindowBatches:
    """Training batches of a token stream: `batch_size` windows of `block_size` tokens each,
    at random offsets, with targets shifted by one: x, y (B, T) int64.

    One epoch is `len(tokens) // (batch_size * block_size)` batches — about as many tokens as
    the stream holds, though windows are drawn with replacement, so an epoch is a measure of
    work, not a pass over every window. The offsets of epoch `e` come from (seed, e) alone.
    """

    def __init__(self, tokens: torch.Tensor, batch_size: int, block_size: int, seed: int,
                 shard: Shard = WHOLE) -> None:
        if len(tokens) < block_size + 1:
            raise ValueError(f"a stream of {len(tokens)} tokens holds no window of "
                             f"{block_size} + 1")
        self.tokens = tokens
        self.batch_size = batch_size
        self.block_size = block_size
        self.seed = seed
        self.shard = shard

    def __len__(self) -> int:
        return max(1, len(self.tokens) // (self.batch_size * self.block_size))

    def offsets(self, epoch: int) -> torch.Tensor:
        """(len, B) start positions of every window of `epoch`, on the tokens' device."""
        highest = len(self.tokens) - self.block_size  # exclusive: room for the shifted target
        starts = torch.randint(0, highest, (len(self), self.batch_size),
                               generator=epoch_generator(self.seed, epoch))
        return starts.to(self.tokens.device)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch`, from batch number `start` on."""
        starts = self.offsets(epoch)[:, self.shard.rows]
        span = torch.arange(self.block_size, device=self.tokens.device)
        for i in range(start, len(self)):
            idx = starts[i][:, None] + span  # (B, T)
            yield self.tokens[idx], self.tokens[idx + 1]


class _HostBatches(torch.utils.data.Dataset):
    """Batch `i` of an epoch's order, gathered from host arrays: a DataLoader worker's job.

    A memory-mapped file is handed to worker processes by name and reopened there, not
    copied into each of them.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> None:
        self.x, self.y, self.rows = x, y, rows  # rows: (batches, B) indices into x and y

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> Batch:
        idx = self.rows[i]
        return torch.from_numpy(np.ascontiguousarray(self.x[idx])), torch.from_numpy(self.y[idx])

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        if isinstance(self.x, np.memmap) and self.x.filename:  # a map of a whole file (vision)
            state["x"] = ("memmap", self.x.filename, self.x.offset, self.x.shape, self.x.dtype)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state["x"], tuple):
            _, filename, offset, shape, dtype = state["x"]
            state["x"] = np.memmap(filename, dtype=dtype, mode="r", offset=offset, shape=shape)
        self.__dict__.update(state)


class StreamedBatches:
    """Training batches of a split left on the host (`data.in_memory=false`).

    The same batches as ShuffledBatches would give — the same order from (seed, epoch), the
    same samples — but gathered by DataLoader workers from host memory or a memory-mapped
    file, into pinned memory when the device is a GPU, and normalised on the device.
    """

    def __init__(self, split: HostSplit, batch_size: int, seed: int, shard: Shard = WHOLE
                 ) -> None:
        self.split = split
        self.batch_size = min(batch_size, len(split))
        self.seed = seed
        self.shard = shard
        self.device = torch.device(split.device)
        shape = (1, len(split.mean)) + (1,) * (split.x.ndim - 2)
        self.mean = torch.tensor(split.mean, device=self.device).view(shape)
        self.std = torch.tensor(split.std, device=self.device).view(shape)

    def __len__(self) -> int:
        return len(self.split) // self.batch_size

    def loader(self, epoch: int, start: int = 0) -> torch.utils.data.DataLoader:
        """A DataLoader over the raw batches `start..` of `epoch` (each item is one batch)."""
        b = self.batch_size
        order = epoch_order(len(self.split), self.seed, epoch).numpy()
        rows = self.split.index[order[:len(self) * b]].reshape(len(self), b)[start:]
        rows = rows[:, self.shard.rows]  # (batches, B // count): the workers load this shard
        workers = self.split.workers
        # A DataLoader's iterator draws its workers' base seed from `generator`, else from
        # torch's global stream, which dropout draws from and a checkpoint saves: each epoch's
        # loader would shift the masks, and a resume (one loader more or less than the
        # uninterrupted run, at another moment) would not be exact. Its own generator, from
        # (seed, epoch) alone, leaves the global stream to the model.
        return torch.utils.data.DataLoader(
            _HostBatches(self.split.x, self.split.y, rows), batch_size=None, shuffle=False,
            num_workers=workers, pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if workers else None,
            generator=torch.Generator().manual_seed(derived_seed("loader", self.seed, epoch)))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        """The batches of `epoch`, from batch number `start` on."""
        for x, y in self.loader(epoch, start):
            x = x.to(self.device, non_blocking=True).float() / self.split.scale
            yield (x - self.mean) / self.std, y.to(self.device, non_blocking=True)


def augment_generator(seed: int, epoch: int, batch: int, device: torch.device
                      ) -> torch.Generator:
    """The generator of the augmentation of one batch, on its device: from three integers."""
    seed = derived_seed("augment", seed, epoch, batch)
    return torch.Generator(device=device).manual_seed(seed)


class AugmentedBatches:
    """Training batches passed through a batched augmentation on their own device.

    Batch `i` of epoch `e` is augmented with a generator seeded by (seed, e, i) alone, so an
    augmented epoch is as reproducible, and a resume in its middle as exact, as a plain one.
    A shard's rows get the draws its rows of the global batch get: data-parallel processes
    together augment the global batch as one process does.
    """

    def __init__(self, inner: Batches, augment: Augmentation, seed: int, shard: Shard = WHOLE
                 ) -> None:
        self.inner = inner
        self.augment = augment
        self.seed = seed
        self.shard = shard
        self.batch_size = inner.batch_size

    def __len__(self) -> int:
        return len(self.inner)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for i, (x, y) in enumerate(self.inner.epoch(epoch, start), start):
            gen = augment_generator(self.seed, epoch, i, x.device)
            yield self.augment(x, gen, self.shard), y


class InputTargets:
    """Batches whose target is their input: a reconstruction's, from a split whose y is
    something else (the labels of a split streamed from the host)."""

    def __init__(self, inner: Batches) -> None:
        self.inner = inner
        self.batch_size = inner.batch_size

    def __len__(self) -> int:
        return len(self.inner)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[Batch]:
        for x, _ in self.inner.epoch(epoch, start):
            yield x, x


def train_batches(data: Data, batch_size: int, seed: int, shard: Shard = WHOLE) -> Batches:
    """The training batches of a data set, ordered by `seed` (the trainer's seed):
    random windows for a token stream, streamed batches for a split left on the host, index
    slices otherwise; augmented when the data set says so. `shard`: this process's rows of
    every batch, in a data-parallel job.

    The augmentation changes the inputs only: a reconstruction's target stays the clean
    input, so reg=[augment] (noise, shifts) trains a denoising autoencoder.
    """
    batches: Batches
    if data.tokens is not None:
        batches = WindowBatches(data.tokens, batch_size, data.spec.input_shape[0], seed, shard)
    elif isinstance(data.train, HostSplit):
        batches = StreamedBatches(data.train, batch_size, seed, shard)
        if data.spec.task == "reconstruction":
            batches = InputTargets(batches)
    else:
        batches = ShuffledBatches(data.train, batch_size, seed, shard)
    if batches.batch_size % shard.count:
        raise ConfigError(f"data.batch_size={batches.batch_size} does not split evenly over "
                          f"{shard.count} processes; use a multiple of {shard.count}.")
    return AugmentedBatches(batches, data.augment, seed, shard) if data.augment else batches
