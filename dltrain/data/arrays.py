"""data=arrays: the user's own arrays from `.npz`, `.npy` or HDF5 files.

`.npz` and HDF5 hold x and y under the keys `data.x` and `data.y` (HDF5: dataset paths such as
`fields/inputs`); `.npy` files hold one array each, x in `data.path` and y in `data.y_path`. Any
shape is read: (N, F) vectors, (N, L) / (N, C, L) signals, (N, H, W) / (N, C, H, W) images or
fields. Integer labels (N,) make a classification, floats of any shape a regression (a target
(N, C, H, W) beside images of the same size is a field-to-field map).

With `data.in_memory=false` the training inputs are not read whole: a `.npy` is memory-mapped
and an HDF5 dataset read in chunks of rows, and training batches are gathered from the file by
DataLoader workers (a `HostSplit`, as data=mnist streams); the targets, the validation and the
test split are read into memory. An `.npz` is a zip archive that cannot be mapped: it is read
whole, and the run's facts say so.
"""

from __future__ import annotations

import logging
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.data.augment import build_augment
from dltrain.data.checks import constant, input_file
from dltrain.data.owned import (
    Samples,
    assemble,
    carve,
    class_labels,
    decide_kind,
    decide_task,
    standardised_targets,
    subsample,
)
from dltrain.data.prepare import channel_stats
from dltrain.data.spec import Data, DataSpec, HostSplit, Split
from dltrain.errors import ConfigError
from dltrain.rules import suggest

log = logging.getLogger(__name__)

FORMATS = {".npz": "npz", ".npy": "npy", ".h5": "hdf5", ".hdf5": "hdf5"}
NUMERIC = "biuf"  # numpy kinds an input may have: booleans, integers, floats
ROWS_A_CHUNK = 4096  # rows read at a time when a file is scanned without being read whole


class H5Rows:
    """Rows of an HDF5 dataset, read when indexed: an array-like that a DataLoader worker can
    take (it reopens the file by name, as a memory-mapped `.npy` is reopened).

    `channel=True` adds a channel axis after the first: (N, L) -> (N, 1, L), (N, H, W) ->
    (N, 1, H, W).
    """

    def __init__(self, path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype,
                 channel: bool = False) -> None:
        self.path, self.key, self.dtype, self.channel = path, key, dtype, channel
        self.shape = (shape[0], 1, *shape[1:]) if channel else tuple(shape)
        self._dataset: Any = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def with_channel(self) -> H5Rows:
        return H5Rows(self.path, self.key, (self.shape[0], *self.shape[1:]), self.dtype, True)

    def __getitem__(self, rows: Any) -> np.ndarray:
        if self._dataset is None:
            import h5py

            self._dataset = h5py.File(self.path, "r")[self.key]
        if isinstance(rows, slice):
            block = self._dataset[rows]
        else:
            # h5py reads increasing, distinct rows only: read those, then put them in order
            rows = np.asarray(rows)
            unique, back = np.unique(rows, return_inverse=True)
            block = self._dataset[unique][back]
        return block[:, None] if self.channel else block

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_dataset": None}  # an open HDF5 handle does not pickle


@dataclass(frozen=True)
class Ref:
    """One array in one file: `key` inside an .npz or HDF5 file, None for an .npy."""

    path: Path
    key: str | None
    setting: str  # the config key that named it, for messages: "data.path", "data.y"
    other: str | None = None  # the key of the file's other array (y for x), never suggested

    @property
    def where(self) -> str:
        return f"{self.path}:{self.key}" if self.key else str(self.path)


def _file(value: Any, setting: str) -> Path:
    path = Path(str(value)).expanduser()
    input_file(path, setting, value)  # a folder, a device, a file that may not be read
    if not path.is_file():
        raise ConfigError(f"{setting}={value}: no such file ({path.resolve()}).")
    if path.suffix.lower() not in FORMATS:
        raise ConfigError(f"{setting}={value} is not an array file (.npz, .npy, .h5 or .hdf5); "
                          "a CSV, TSV or Parquet table is read by data=table.")
    return path


def _missing_key(ref: Ref, keys: Sequence[str]) -> ConfigError:
    # the nearest name, else the one array of the file that the other key does not name
    rest = [k for k in keys if k != ref.other]
    near = suggest(str(ref.key), keys) or (rest[0] if len(rest) == 1 else None)
    hint = f"; did you mean '{near}'?" if near else ";"
    held = ", ".join(f"'{k}'" for k in keys) or "nothing"
    return ConfigError(f"{ref.path} has no array '{ref.key}' ({ref.setting}){hint} "
                       f"{'It' if near else 'it'} holds {held}.")


def _hdf5_datasets(handle: Any) -> list[str]:
    import h5py

    names: list[str] = []
    handle.visititems(lambda name, obj: names.append(name)
                      if isinstance(obj, h5py.Dataset) else None)
    return names


def read_array(ref: Ref, mmap: bool = False) -> Any:
    """The array `ref` names: a numpy array, or (with `mmap`) a read-only memory map of an
    .npy or an `H5Rows` over an HDF5 dataset, so that a large file is not read whole."""
    kind = FORMATS[ref.path.suffix.lower()]
    try:
        if kind == "npy":
            return np.load(ref.path, mmap_mode="r" if mmap else None, allow_pickle=False)
        if kind == "npz":
            with np.load(ref.path, allow_pickle=False) as archive:
                if ref.key not in archive.files:
                    raise _missing_key(ref, archive.files)
                return archive[ref.key]
        import h5py

        with h5py.File(ref.path, "r") as handle:
            dataset = handle.get(str(ref.key))
            if not isinstance(dataset, h5py.Dataset):
                raise _missing_key(ref, _hdf5_datasets(handle))
            if mmap:
                return H5Rows(ref.path, dataset.name, dataset.shape, dataset.dtype)
            return dataset[()]
    except ConfigError:
        raise
    except ValueError as err:  # object arrays (pickles) are refused: a data file runs no code
        raise ConfigError(f"{ref.where} holds no plain numeric or label array ({err}).") from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise ConfigError(f"{ref.path} is not a readable {ref.path.suffix} file ({err}).") \
            from None


def sources(value: Any, setting: str, cfg: Mapping[str, Any]) -> tuple[Ref, Ref]:
    """The x and y arrays of the files one setting names: an .npz / HDF5 file (keys data.x,
    data.y), an .npy whose y is `data.y_path` (data.path only), or a pair [X_FILE, Y_FILE]."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != 2:
            raise ConfigError(f"{setting} must be one file or a pair [X_FILE, Y_FILE], not "
                              f"{len(value)} files.")
        x_path, y_path = _file(value[0], setting), _file(value[1], setting)
        return (Ref(x_path, None if x_path.suffix == ".npy" else str(cfg["x"]), "data.x"),
                Ref(y_path, None if y_path.suffix == ".npy" else str(cfg["y"]), "data.y"))
    if value is None:
        raise ConfigError("data=arrays needs data.path=FILE: an .npz, .npy (with data.y_path) "
                          "or HDF5 file.")
    path = _file(value, setting)
    if path.suffix.lower() != ".npy":
        return (Ref(path, str(cfg["x"]), "data.x", other=str(cfg["y"])),
                Ref(path, str(cfg["y"]), "data.y", other=str(cfg["x"])))
    if setting != "data.path":
        raise ConfigError(f"{setting}={value} is an .npy file, which holds x alone; give the "
                          f"pair {setting}=[X.npy,Y.npy].")
    if cfg["y_path"] is None:
        raise ConfigError(f"data.path={value} is an .npy file, which holds x alone; name the "
                          "targets' file with data.y_path=Y.npy.")
    return Ref(path, None, "data.path"), Ref(_file(cfg["y_path"], "data.y_path"), None,
                                              "data.y_path")


def bad_rows(x: Any, what: str = "x") -> np.ndarray:
    """Indices of the samples of `x` holding NaN or infinite values, read a chunk at a time."""
    if np.dtype(x.dtype).kind != "f":
        return np.zeros(0, dtype=np.int64)
    found = []
    for start in range(0, len(x), ROWS_A_CHUNK):
        block = np.asarray(x[start:start + ROWS_A_CHUNK]).reshape(
            min(ROWS_A_CHUNK, len(x) - start), -1)
        found.append(start + np.flatnonzero(~np.isfinite(block).all(axis=1)))
    return np.concatenate(found) if found else np.zeros(0, dtype=np.int64)


@dataclass
class Raw:
    """x and y of one split as the files hold them, checked: same length, numeric x, no NaN
    (or its rows dropped). `rows` are the samples kept (all unless data.missing=drop)."""

    x: Any
    y: np.ndarray
    rows: np.ndarray
    where: str
    dropped: int = 0


def read_raw(x_ref: Ref, y_ref: Ref, missing: str, mmap: bool) -> Raw:
    x = read_array(x_ref, mmap)
    y = np.asarray(read_array(y_ref))
    where = x_ref.where if x_ref.path == y_ref.path else f"{x_ref.where} + {y_ref.where}"
    if x.ndim < 2:
        raise ConfigError(f"{x_ref.where}: x of shape {tuple(x.shape)} has no sample axis "
                          "with values: x is (N, ...) with one sample a row.")
    if len(x) != len(y):
        raise ConfigError(f"{where}: x has {len(x):,} samples and y {len(y):,}; they must have "
                          "the same length.")
    if np.dtype(x.dtype).kind not in NUMERIC:
        raise ConfigError(f"{x_ref.where}: x holds {x.dtype} values, not numbers.")
    bad = np.union1d(bad_rows(x), bad_rows(y))
    if len(bad) and missing != "drop":
        raise ConfigError(f"{where}: {len(bad):,} of {len(x):,} samples hold NaN or infinite "
                          f"values in x or y (the first is row {bad[0]}); fix them, or drop "
                          "them with data.missing=drop.")
    rows = np.setdiff1d(np.arange(len(x)), bad)
    if len(rows) == 0:
        raise ConfigError(f"{where}: every sample holds NaN or infinite values.")
    return Raw(x, y, rows, where, dropped=len(bad))


def _fields(y: np.ndarray, kind: str, x_shape: tuple[int, ...]) -> np.ndarray:
    """A target (N, H, W) beside images of H x W becomes (N, 1, H, W): a one-channel field."""
    if kind == "image" and y.ndim == 3 and y.shape[1:] == tuple(x_shape[-2:]):
        return y[:, None]
    return y


@dataclass(frozen=True)
class ArrayFiles:
    """data=arrays: read, check, decide kind and task, then `assemble` (or stream)."""

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        streamed = not bool(cfg["in_memory"])
        missing = str(cfg["missing"])
        pool_refs = sources(cfg["path"], "data.path", cfg)
        mappable = FORMATS[pool_refs[0].path.suffix.lower()] != "npz"
        pool = read_raw(*pool_refs, missing, mmap=streamed and mappable)
        held = {}
        for part in ("val", "test"):
            value = cfg[f"{part}_path"]
            if value is not None:
                held[part] = read_raw(*sources(value, f"data.{part}_path", cfg), missing, False)
        kind, kind_why = decide_kind(tuple(pool.x.shape), str(cfg["kind"]))
        task, why = decide_task(pool.y, str(cfg["task"]), f"y ({pool_refs[1].where})")
        facts: dict[str, Any] = {"kind": kind_why}
        dropped = sum(r.dropped for r in (pool, *held.values()))
        if dropped:
            log.info(f"data.missing=drop: dropped {dropped:,} samples with NaN or infinite "
                     "values")
            facts["dropped_rows"] = dropped
        if streamed and not mappable:
            facts["in_memory"] = (f"{pool_refs[0].path} is an .npz (a zip archive), read whole; "
                                  "save x as .npy or HDF5 to stream it")
        if streamed and mappable:
            return _streamed(cfg, device, pool, held, kind, task, why, facts)

        def samples(raw: Raw) -> Samples:
            x = np.asarray(raw.x)[raw.rows] if raw.dropped else np.asarray(raw.x)
            y = raw.y[raw.rows] if raw.dropped else raw.y
            return Samples(x, _fields(y, kind, x.shape), raw.where)

        return assemble(cfg, device, samples(pool), kind=kind, task=task, why=why,
                        val=samples(held["val"]) if "val" in held else None,
                        test=samples(held["test"]) if "test" in held else None, facts=facts)


def _channel(x: Any, kind: str) -> Any:
    """(N, L) signals and (N, H, W) images with their channel axis: (N, 1, ...), a view."""
    if (kind == "signal" and x.ndim == 2) or (kind == "image" and x.ndim == 3):
        return x.with_channel() if isinstance(x, H5Rows) else x.reshape(len(x), 1, *x.shape[1:])
    return x


def _streamed(cfg: Mapping[str, Any], device: torch.device | str, pool: Raw,
              held: dict[str, Raw], kind: str, task: str, why: str, facts: dict[str, Any]
              ) -> Data:
    """The training split left in its file (a HostSplit), validation and test in memory.

    The same splits, subsample, labels, target scale and input statistics as `assemble`
    would give for the same samples read whole.
    """
    x = _channel(pool.x, kind)
    y = _fields(pool.y, kind, tuple(pool.x.shape))
    parts = carve(len(pool.rows), cfg, need_val="val" not in held, need_test="test" not in held,
                  chronological=False, where=pool.where)
    train, val, test = (pool.rows[c] for c in parts)
    train = subsample(train, cfg["n_train"], int(cfg["seed"]), pool.where)

    def held_out(part: str, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if part in held:
            raw = held[part]
            hx = _channel(np.asarray(raw.x)[raw.rows], kind)
            return hx, _fields(raw.y[raw.rows], kind, tuple(raw.x.shape))
        return np.asarray(x[rows]), y[rows]  # in the order assemble would give them

    (vx, vy), (tx, ty) = held_out("val", val), held_out("test", test)
    if vx.shape[1:] != x.shape[1:] or tx.shape[1:] != x.shape[1:]:
        raise ConfigError(f"{pool.where}: the validation or test inputs have another shape a "
                          f"sample than {tuple(x.shape[1:])}.")
    # The split's rows of a full-length target array: HostSplit gathers x and y by row.
    target_scale = None
    if task == "classification":
        class_names, (t_ids, v_ids, s_ids) = class_labels([y[train], vy, ty], pool.where)
        y_host = np.zeros(len(y), dtype=np.int64)
        outputs, target_shape = None, ()
    else:
        class_names = ()
        (t_ids, v_ids, s_ids), target_scale = standardised_targets([y[train], vy, ty], pool.where)
        y_host = np.zeros((len(y), *t_ids.shape[1:]), dtype=np.float32)
        sample = tuple(t_ids.shape[1:])
        outputs, target_shape = math.prod(sample), sample if len(sample) > 1 else ()
    y_host[train] = t_ids.numpy()
    mean, std = channel_stats(x, train, 1.0, ROWS_A_CHUNK)
    constant(std, pool.where)

    def placed(values: np.ndarray, labels: torch.Tensor) -> Split:
        inputs = torch.as_tensor(np.asarray(values, dtype=np.float32))
        return Split(((inputs - mean) / std).to(device), labels.to(device))

    host = HostSplit(x, y_host, train, 1.0, tuple(mean.flatten().tolist()),
                     tuple(std.flatten().tolist()), str(device), int(cfg["workers"]))
    spec = DataSpec(name=str(cfg["name"]), task=task, kind=kind, input_shape=tuple(x.shape[1:]),
                    num_classes=len(class_names) if task == "classification" else None,
                    num_outputs=outputs, class_names=class_names, target_shape=target_shape)
    blank = tuple((-mean / std).flatten().tolist())
    decided = {"task": task, "why": why,
               "samples": {"train": len(train), "val": len(vx), "test": len(tx)}, **facts}
    return Data(host, placed(vx, v_ids), placed(tx, s_ids), spec=spec,
                norm={"mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
                augment=build_augment(cfg["augment"], spec.name, kind, False, blank),
                target_scale=target_scale, facts=decided)
