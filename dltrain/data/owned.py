"""The user's own samples -> Data: what every file source (table, arrays, images, series) shares.

A reader turns its files into `Samples` (numeric inputs, raw targets, where they came from) and
decides the task with `infer_task`; `assemble` then does the rest the same way for all of them:
the splits (files given, or seeded / chronological fractions of one pool), `data.n_train`, the
class names, the standardisation of regression targets and of inputs (train split's statistics
alone), the DataSpec, and the move to the device. Nothing here reads or writes a file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dltrain.data.augment import build_augment
from dltrain.data.checks import constant, finite
from dltrain.data.columns import ColumnInputs, rows_of, standardise_in_place, statistics
from dltrain.data.prepare import n_validation
from dltrain.data.spec import Data, DataSpec, Split, TargetScale
from dltrain.errors import ConfigError

__all__ = ["FEW_CLASSES", "ColumnInputs", "Samples", "assemble", "infer_task"]

# An integer target with at most this many distinct values is read as class labels under
# data.task=auto (digits, ratings, categories coded as numbers); more is a count: regression.
FEW_CLASSES = 20

# How many samples of each shape the inputs must have, by kind (after the channel axis is added).
_INPUT_AXES = {"vector": (2,), "signal": (2, 3), "image": (3, 4)}


@dataclass(frozen=True)
class Samples:
    """A user's samples as read from a file, before splitting."""

    # (N, ...) numeric inputs: (N, F), (N, L), (N, C, L), (N, H, W), (N, C, H, W)
    x: np.ndarray | ColumnInputs
    y: np.ndarray  # (N,) labels (ints, strings, bools) or (N, ...) float targets
    where: str  # the file(s) it came from, for messages ("data.csv")

    def __len__(self) -> int:
        return len(self.x)


def infer_task(y: np.ndarray, setting: str, where: str) -> tuple[str, str]:
    """(task, why) from data.task (auto | classification | regression).

    Strings, booleans, categories and integers with few distinct values (<= FEW_CLASSES) are
    class labels; floats are regression targets. `where` names the target in the phrase the
    run's first line prints, e.g. "column 'species'": the answer's `why` is then
    "classification: column 'species' holds 3 distinct strings".
    """
    kind = y.dtype.kind
    textual = kind in "USO"  # strings, or objects (pandas' strings and categories)
    if setting == "regression":
        if textual or kind == "b":
            held = "booleans" if kind == "b" else "text"
            raise ConfigError(f"data.task=regression, but {where} holds {held}: "
                              "regression needs numbers (use data.task=classification).")
        return "regression", f"regression: data.task=regression for {where}"
    if setting == "classification":
        if y.ndim != 1:
            raise ConfigError(f"data.task=classification, but {where} has "
                              f"{math.prod(y.shape[1:])} values a sample: a class is one label "
                              "(use data.task=regression for several outputs).")
        return "classification", f"classification: data.task=classification for {where}"
    if setting != "auto":
        raise ConfigError(f"data.task={setting} is not one of auto, classification, regression.")
    if y.ndim != 1:
        if textual or kind == "b":
            raise ConfigError(f"{where} holds labels with {math.prod(y.shape[1:])} values a "
                              "sample: a class target is one label a sample.")
        return "regression", f"regression: {where} holds {math.prod(y.shape[1:])} numbers a sample"
    if kind == "b":
        return "classification", f"classification: {where} holds booleans"
    if textual:
        distinct = len(np.unique(y.astype(str)))
        return "classification", f"classification: {where} holds {distinct} distinct strings"
    if kind in "iu":
        distinct = len(np.unique(y))
        if distinct <= FEW_CLASSES:
            return ("classification", f"classification: {where} holds integers with {distinct} "
                    f"distinct values (<= {FEW_CLASSES}; data.task=regression overrides)")
        return ("regression", f"regression: {where} holds integers with {distinct} distinct "
                f"values (> {FEW_CLASSES})")
    if kind == "f":
        return "regression", f"regression: {where} holds floats"
    raise ConfigError(f"{where} holds values of type {y.dtype}: neither labels nor numbers.")


def decide_kind(shape: tuple[int, ...], setting: str) -> tuple[str, str]:
    """(kind, why) of inputs of `shape` (N, ...): data.kind, or read from the shape.

    (N, F) are vectors and four axes are images; three axes (N, A, B) are images when A and B
    are both at least 8 and within a factor of 4 of each other (28x28, 64x128), else signals of
    A channels and B steps ((N, 3, 500)).
    """
    axes = len(shape) - 1
    if setting != "auto":
        if len(shape) not in _INPUT_AXES[setting]:
            raise ConfigError(f"data.kind={setting} cannot read inputs of shape {shape}.")
        return setting, f"data.kind={setting}"
    if axes == 1:
        return "vector", f"x of shape {shape} holds vectors of {shape[1]} features"
    if axes == 3:
        return "image", f"x of shape {shape} holds images of {shape[1]} channels"
    if axes == 2:
        a, b = shape[1:]
        if min(a, b) >= 8 and max(a, b) <= 4 * min(a, b):
            return "image", f"x of shape {shape} holds {a}x{b} images (data.kind=signal: " \
                            f"{a} channels of {b} steps)"
        return "signal", f"x of shape {shape} holds signals of {a} channels and {b} steps"
    raise ConfigError(f"x of shape {shape} cannot be read: inputs are (N, F) vectors, (N, L) or "
                      "(N, C, L) signals, (N, H, W) or (N, C, H, W) images.")


def decide_task(y: np.ndarray, setting: str, where: str) -> tuple[str, str]:
    """As for tables, except that integer labels (N,) are classes however many there are."""
    if setting == "auto" and y.ndim == 1 and y.dtype.kind in "iu":
        return ("classification", f"classification: {where} holds integer labels "
                f"({len(np.unique(y))} classes; data.task=regression overrides)")
    return infer_task(y, setting, where)


def _check(samples: Samples, kind: str) -> None:
    """x and y say the same number of samples, and x has a shape its kind can read."""
    if len(samples.x) != len(samples.y):
        raise ConfigError(f"{samples.where}: x has {len(samples.x):,} samples and y "
                          f"{len(samples.y):,}; they must have the same length.")
    if len(samples.x) == 0:
        raise ConfigError(f"{samples.where} holds no samples.")
    if samples.x.ndim not in _INPUT_AXES[kind]:
        raise ConfigError(f"{samples.where}: inputs of shape {tuple(samples.x.shape)} cannot be "
                          f"read as {kind} samples.")


def _with_channels(x: torch.Tensor, kind: str) -> torch.Tensor:
    """(N, L) signals -> (N, 1, L) and (N, H, W) images -> (N, 1, H, W): one channel."""
    if (kind == "signal" and x.ndim == 2) or (kind == "image" and x.ndim == 3):
        return x.unsqueeze(1)
    return x


def carve(n: int, cfg: Mapping[str, Any], *, need_val: bool, need_test: bool,
           chronological: bool, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (train, val, test) of a pool of `n`: the held-out parts by fraction, from a
    seeded permutation, or in order (train, then validation, then test) when chronological.
    """
    order = (np.arange(n) if chronological else
             torch.randperm(n, generator=torch.Generator().manual_seed(int(cfg["seed"]))).numpy())
    n_test = 0
    if need_test:
        fraction = float(cfg["test_fraction"])
        n_test = round(n * fraction)
        if n_test < 1 or n_test >= n:
            raise ConfigError(f"data.test_fraction={fraction} of the {n:,} samples of {where} "
                              "leaves no test or no training samples.")
    n_val = 0
    if need_val:
        n_val = n_validation(n - n_test, float(cfg["val_fraction"]),
                             f"the {n - n_test:,} samples of {where} left after the test split")
    n_train = n - n_val - n_test
    if chronological:
        return order[:n_train], order[n_train:n_train + n_val], order[n_train + n_val:]
    # Each part is a set (batches are drawn by a randperm of their own), taken in file order:
    # rows are then gathered from memory forwards, several times faster than at random.
    part = np.empty(n, dtype=np.int8)
    part[order[:n_train]], part[order[n_train:n_train + n_val]] = 0, 1
    part[order[n_train + n_val:]] = 2
    return np.flatnonzero(part == 0), np.flatnonzero(part == 1), np.flatnonzero(part == 2)


def subsample(index: np.ndarray, n_train: int | None, seed: int, where: str) -> np.ndarray:
    """data.n_train of the training rows, drawn by seed, kept in file order (and so in time
    order for a series)."""
    if n_train is None:
        return index
    if n_train > len(index):
        raise ConfigError(f"data.n_train={n_train} is more than the {len(index):,} training "
                          f"samples of {where}.")
    pick = torch.randperm(len(index), generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(index[pick[:n_train]])


def class_labels(parts: list[np.ndarray], where: str) -> tuple[tuple[str, ...], list[torch.Tensor]]:
    """Class names (sorted) and every part's labels as ids 0..K-1; one example of a class is
    refused (nothing to train and check on)."""
    every = np.concatenate(parts)
    # booleans and integers sort as numbers; anything else as the text it prints as
    keys = every if every.dtype.kind in "biu" else every.astype(str)
    names, counts = np.unique(keys, return_counts=True)
    single = names[counts == 1]
    if len(single):
        raise ConfigError(f"{where}: class '{single[0]}' has a single example; every class "
                          "needs at least two (drop it or add examples).")
    if len(names) < 2:
        raise ConfigError(f"{where}: the target holds one class ('{names[0]}'); "
                          "classification needs at least two.")
    ids = []
    for part in parts:
        part_keys = part if every.dtype.kind in "biu" else part.astype(str)
        ids.append(torch.from_numpy(np.searchsorted(names, part_keys).astype(np.int64)))
    return tuple(str(name) for name in names), ids


def standardised_targets(parts: list[np.ndarray], where: str
                         ) -> tuple[list[torch.Tensor], TargetScale]:
    """Float targets standardised by the first part's (train's) statistics: per output for
    (N,) / (N, k), per channel (axis 1) for fields (N, C, ...)."""
    try:
        arrays = [np.array(p, dtype=np.float32) for p in parts]  # copies: standardised in place
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: the regression target is not numeric ({err}).") from None
    if not all(np.isfinite(a).all() for a in arrays):
        raise ConfigError(f"{where}: the regression target holds NaN or infinite values.")
    tensors = [torch.from_numpy(a) for a in arrays]
    tensors = [t.unsqueeze(1) if t.ndim == 1 else t for t in tensors]
    kind = "vector" if tensors[0].ndim == 2 else "field"
    mean, std = statistics(tensors[0], kind)
    return [standardise_in_place(t, mean, std) for t in tensors], TargetScale(mean, std)


def _check_inputs(xs: list[torch.Tensor], mean: torch.Tensor, std: torch.Tensor,
                  wheres: list[str]) -> None:
    """Refuse NaN or infinite inputs (a table's `inf` cells, a user function's arrays: the
    readers of arrays and series refuse or drop theirs before, as data.missing says), naming
    the split's file; warn about training inputs that are one constant. The training split's
    statistics show a non-finite value at no cost; the held-out splits are scanned."""
    scan = [not (bool(torch.isfinite(mean).all()) and bool(torch.isfinite(std).all())),
            True, True]
    for x, where, part, needed in zip(xs, wheres, ("training", "validation", "test"), scan,
                                      strict=True):
        if needed:
            finite(x, f"{where} ({part} split)", "inputs")
    constant(std, wheres[0])


def assemble(cfg: Mapping[str, Any], device: torch.device | str, pool: Samples, *, kind: str,
             task: str, why: str, val: Samples | None = None, test: Samples | None = None,
             chronological: bool = False, facts: dict | None = None) -> Data:
    """Split, subsample, normalise and move to the device: the Data every file source returns.

    Reads data.seed, data.n_train, data.name, data.augment, and data.val_fraction /
    data.test_fraction where `val` / `test` are not given (then carved from the pool).
    `kind` is "vector" (N, F), "signal" (N, L) or (N, C, L), "image" (N, H, W) or (N, C, H, W);
    a missing channel axis is added.
    """
    if kind not in _INPUT_AXES:
        raise ValueError(f"assemble: kind={kind!r} is not one of {', '.join(_INPUT_AXES)}")
    given = [s for s in (pool, val, test) if s is not None]
    for samples in given:
        _check(samples, kind)
    shapes = {tuple(s.x.shape[1:]) for s in given}
    if len(shapes) > 1:
        raise ConfigError(f"{', '.join(s.where for s in given)}: the inputs have different "
                          f"shapes a sample ({' vs '.join(str(s) for s in sorted(shapes))}).")
    name = str(cfg["name"])
    train_idx, val_idx, test_idx = carve(len(pool), cfg, need_val=val is None,
                                          need_test=test is None,
                                          chronological=chronological, where=pool.where)
    train_idx = subsample(train_idx, cfg["n_train"], int(cfg["seed"]), pool.where)
    # copies (a gather of rows, or of a given split): normalised in place below, and what the
    # caller handed in stays as it was
    parts = [(rows_of(pool.x, train_idx), pool.y[train_idx]),
             (rows_of(val.x, None), val.y) if val is not None
             else (rows_of(pool.x, val_idx), pool.y[val_idx]),
             (rows_of(test.x, None), test.y) if test is not None
             else (rows_of(pool.x, test_idx), pool.y[test_idx])]
    where = " + ".join(s.where for s in given)

    target_scale = None
    if task == "classification":
        class_names, ys = class_labels([y for _, y in parts], where)
        target_shape: tuple[int, ...] = ()
        outputs = None
    else:
        class_names = ()
        ys, target_scale = standardised_targets([y for _, y in parts], where)
        sample = tuple(ys[0].shape[1:])
        target_shape = sample if len(sample) > 1 else ()
        outputs = math.prod(sample)

    try:
        xs = [_with_channels(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
                             kind) for x, _ in parts]
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{where}: the inputs are not numeric ({err}).") from None
    with np.errstate(invalid="ignore", over="ignore"):  # an infinity is refused just below
        mean, std = statistics(xs[0], kind)
    _check_inputs(xs, mean, std, [s.where if s is not None else pool.where
                                  for s in (pool, val, test)])
    xs = [standardise_in_place(x, mean, std) for x in xs]

    spec = DataSpec(
        name=name, task=task, kind=kind, input_shape=tuple(xs[0].shape[1:]),
        num_classes=len(class_names) if task == "classification" else None,
        num_outputs=outputs, class_names=class_names, target_shape=target_shape)
    norm = {"mean": mean.flatten().tolist(), "std": std.flatten().tolist()}
    blank = tuple((-mean / std).flatten().tolist())  # what a zero input becomes
    # A user's images may or may not keep their labels in a mirror: flip only when asked.
    augment = build_augment(cfg["augment"], name, kind, False, blank)
    splits = [Split(x.to(device), y.to(device)) for x, y in zip(xs, ys, strict=True)]
    decided = {"task": task, "why": why,
               "samples": {"train": len(splits[0]), "val": len(splits[1]),
                           "test": len(splits[2])},
               **(facts or {})}
    return Data(*splits, spec=spec, norm=norm, augment=augment, target_scale=target_scale,
                facts=decided)
