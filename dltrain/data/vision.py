"""Image data sets read from their standard files: MNIST and Fashion-MNIST (IDX), CIFAR-10
(python-version pickled batches, or their .tar.gz archive).

Files a user already has are used where they are: directly in `data.root`, or in torchvision's
layout (`ROOT/MNIST/raw/`, `ROOT/FashionMNIST/raw/`, `ROOT/cifar-10-batches-py/`). Only what is
missing is downloaded (download.py). Every file is checked as it is read — an IDX header
against the file's size, a CIFAR pickle against the arrays it must hold — and a bad one is a
ConfigError naming it, never a traceback. A CIFAR pickle is read by an unpickler that builds
numpy arrays, lists and strings and nothing else: a data file cannot run code.
"""

from __future__ import annotations

import gzip
import math
import struct
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import torch

from dltrain.data.augment import build_augment
from dltrain.data.checks import constant, finite, input_folder, readable
from dltrain.data.download import Remote, obtain
from dltrain.data.prepare import channel_stats, n_validation, pool_index, standardise
from dltrain.data.spec import Data, DataSpec, HostSplit, Split
from dltrain.data.unpickle import unpickle_arrays
from dltrain.errors import ConfigError

PIXEL_SCALE = 255.0  # raw uint8 pixels -> [0, 1] before normalisation


@dataclass(frozen=True)
class RawImages:
    """A labelled image set as its files hold it: raw pixels (N, C, H, W) and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# ---------------------------------------------------------------------------------------------
# IDX (MNIST, Fashion-MNIST)

# IDX type codes (the third byte of the magic number) and the big-endian types they stand for.
IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def _idx_header(buf: bytes, path: Path, ndim: int) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, header length) from the start of an IDX file, checked."""
    if len(buf) >= 2 and buf[:2] != b"\x00\x00":
        raise ConfigError(f"{path} is not an IDX file (it does not start with two zero bytes).")
    if len(buf) < 4:
        raise ConfigError(f"{path} is truncated: it ends inside its header.")
    code, n = buf[2], buf[3]
    if code not in IDX_TYPES:
        raise ConfigError(f"{path} is not an IDX file (unknown data type 0x{code:02x}).")
    if n != ndim:
        raise ConfigError(f"{path} holds a {n}-dimensional array where a {ndim}-dimensional one "
                          f"belongs ({'images' if ndim == 3 else 'labels'}).")
    if len(buf) < 4 + 4 * ndim:
        raise ConfigError(f"{path} is truncated: it ends inside its {4 + 4 * ndim}-byte header.")
    dims = struct.unpack(f">{ndim}I", buf[4:4 + 4 * ndim])
    return np.dtype(IDX_TYPES[code]), dims, 4 + 4 * ndim


def _check_size(path: Path, have: int, dtype: np.dtype, dims: tuple[int, ...]) -> None:
    want = math.prod(dims) * dtype.itemsize
    if have < want:
        raise ConfigError(f"{path} is truncated: it holds {have:,} bytes of data where its "
                          f"header promises {want:,}; delete it and run again, or replace it.")
    if have > want:
        raise ConfigError(f"{path} is corrupt: {have - want:,} bytes follow the data its header "
                          "describes.")


def read_idx(path: Path, ndim: int, mmap: bool = False) -> np.ndarray:
    """The array in the IDX file at `path`, gzipped or not (told by its content, not its name).

    With `mmap`, an uncompressed file is memory-mapped (read-only) instead of read: its pages
    are loaded when a batch touches them. A gzipped one is always decompressed into memory.
    """
    path = Path(path)
    readable(path, str(path))
    with path.open("rb") as f:
        start = f.read(4 + 4 * ndim)
    if start[:2] == _GZIP_MAGIC:
        try:
            with gzip.open(path, "rb") as f:
                content = f.read()
        except (EOFError, OSError, zlib.error) as err:
            raise ConfigError(f"{path} is truncated or corrupt ({err}); delete it and run "
                              "again, or replace it.") from None
        dtype, dims, offset = _idx_header(content, path, ndim)
        _check_size(path, len(content) - offset, dtype, dims)
        array = np.frombuffer(content, dtype=dtype, offset=offset).reshape(dims)
    else:
        dtype, dims, offset = _idx_header(start, path, ndim)
        _check_size(path, path.stat().st_size - offset, dtype, dims)
        if mmap:
            array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=dims)
        else:
            array = np.fromfile(path, dtype=dtype, offset=offset).reshape(dims)
    # a float file may hold NaN or infinities: named here, not at step 1 by the first layer
    finite(array, str(path), "pixels" if ndim == 3 else "labels")
    # Pixels are bytes, endianness is moot for them; anything wider is made native.
    return array if dtype.itemsize == 1 else array.astype(dtype.newbyteorder("="))


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
             "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def _labels(y: np.ndarray, n_images: int, classes: int, path: Path) -> np.ndarray:
    if len(y) != n_images:
        raise ConfigError(f"{path} holds {len(y):,} labels for {n_images:,} images.")
    if len(y) and (y.min() < 0 or y.max() >= classes):
        raise ConfigError(f"{path} holds labels outside 0..{classes - 1}.")
    return y.astype(np.int64)


@dataclass(frozen=True)
class IdxFiles:
    """An MNIST-style set: four IDX files, in `data.root` or in `ROOT/<folder>/raw/`."""

    folder: str  # torchvision's folder name: MNIST, FashionMNIST
    mirrors: tuple[str, ...]  # base URLs that serve the four .gz files
    md5: tuple[str, ...]  # published MD5 of each .gz file, in IDX_FILES order

    def remotes(self) -> dict[str, Remote]:
        return {stem: Remote(f"{stem}.gz", tuple(m + f"{stem}.gz" for m in self.mirrors),
                             f"md5:{md5}")
                for stem, md5 in zip(IDX_FILES, self.md5, strict=True)}

    def find(self, root: Path, stem: str) -> Path | None:
        """Where the file is: uncompressed first (it can be memory-mapped), root first."""
        places = (root, root / self.folder / "raw")
        for name in (stem, f"{stem}.gz"):
            for place in places:
                if (place / name).is_file():
                    return place / name
        return None

    def load(self, cfg: Mapping[str, Any], name: str, mmap: bool) -> RawImages:
        root = Path(str(cfg["root"])).expanduser()
        input_folder(root, "data.root", cfg["root"], f"data={name} reads its files from a "
                     f"folder (data.root=FOLDER holding them, or FOLDER/{self.folder}/raw/)")
        raw = root / self.folder / "raw"
        paths = {stem: self.find(root, stem) for stem in IDX_FILES}
        missing = [stem for stem, p in paths.items() if p is None]
        if missing:
            remotes = self.remotes()
            gz = [remotes[stem].name for stem in missing]
            obtain([remotes[stem] for stem in missing], raw, what=f"data={name}",
                   download=bool(cfg["download"]), mirror=cfg["mirror"],
                   files=f"{', '.join(gz)} (gzipped or not)",
                   elsewhere=f" or directly in {root.resolve()}")
            paths = {stem: self.find(root, stem) for stem in IDX_FILES}
        arrays = {}
        for stem, path in paths.items():
            assert path is not None  # found, or just downloaded
            arrays[stem] = read_idx(path, 1 if "labels" in stem else 3, mmap=mmap)
        x_train, x_test = arrays[IDX_FILES[0]], arrays[IDX_FILES[2]]
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ConfigError(f"{paths[IDX_FILES[0]]} holds {x_train.shape[1:]} images but "
                              f"{paths[IDX_FILES[2]]} holds {x_test.shape[1:]} ones.")
        return RawImages(
            x_train=x_train.reshape(len(x_train), 1, *x_train.shape[1:]),  # a view: (N,1,H,W)
            y_train=_labels(arrays[IDX_FILES[1]], len(x_train), 10, paths[IDX_FILES[1]]),
            x_test=x_test.reshape(len(x_test), 1, *x_test.shape[1:]),
            y_test=_labels(arrays[IDX_FILES[3]], len(x_test), 10, paths[IDX_FILES[3]]),
        )


# ---------------------------------------------------------------------------------------------
# CIFAR-10 (python version)

CIFAR_DIR = "cifar-10-batches-py"
CIFAR_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST = "test_batch"


def _cifar_batch(obj: Any, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, 3, 32, 32) uint8, labels (n,) int64) of one unpickled CIFAR-10 batch."""
    if not isinstance(obj, dict):
        raise ConfigError(f"{where} is not a CIFAR-10 batch (it holds a {type(obj).__name__}).")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}
    data, labels = obj.get("data"), obj.get("labels")
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[1] == 3 * 32 * 32) or labels is None:
        raise ConfigError(f"{where} is not a CIFAR-10 batch (it lacks 'labels' or a 'data' "
                          "array of 3072 bytes per image).")
    try:
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise ConfigError(f"{where} is corrupt: its labels are not whole numbers.") from None
    return data.reshape(-1, 3, 32, 32), _labels(y, len(data), 10, Path(where))


def _archive_members(archive: Path, names: tuple[str, ...]) -> dict[str, bytes]:
    """The named files of `cifar-10-batches-py/` inside the archive, read without extracting."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                path = PurePosixPath(member.name)
                if member.isfile() and path.parent.name == CIFAR_DIR and path.name in names:
                    extracted = tar.extractfile(member)
                    if extracted is not None:
                        found[path.name] = extracted.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        raise ConfigError(f"{archive} is truncated or corrupt ({err}); delete it and run again "
                          "to download it anew, or replace it.") from None
    lacking = [n for n in names if n not in found]
    if lacking:
        raise ConfigError(f"{archive} lacks {CIFAR_DIR}/{', '.join(lacking)}.")
    return found


@dataclass(frozen=True)
class CifarFiles:
    """CIFAR-10's python batches in `ROOT/cifar-10-batches-py/`, or `ROOT/<archive>.tar.gz`."""

    archive: Remote

    def load(self, cfg: Mapping[str, Any], name: str, mmap: bool) -> RawImages:
        root = Path(str(cfg["root"])).expanduser()
        input_folder(root, "data.root", cfg["root"], f"data={name} reads its files from a "
                     f"folder (data.root=FOLDER holding {CIFAR_DIR}/ or "
                     f"{self.archive.name})")
        folder = root / CIFAR_DIR
        names = (*CIFAR_TRAIN, CIFAR_TEST)
        if all((folder / n).is_file() for n in names):
            for n in names:
                readable(folder / n, str(folder / n))
            contents = {n: (folder / n).read_bytes() for n in names}
            where = {n: str(folder / n) for n in names}
        else:
            archive = root / self.archive.name
            if not archive.is_file():
                obtain([self.archive], root, what=f"data={name}", download=bool(cfg["download"]),
                       mirror=cfg["mirror"],
                       elsewhere=f" (or {', '.join(names)} in {folder.resolve()})")
            readable(archive, str(archive))
            contents = _archive_members(archive, names)
            where = {n: f"{archive}:{CIFAR_DIR}/{n}" for n in names}
        batches = {n: _cifar_batch(unpickle_arrays(contents[n], where[n]), where[n])
                   for n in names}
        x_test, y_test = batches[CIFAR_TEST]
        return RawImages(
            x_train=np.concatenate([batches[n][0] for n in CIFAR_TRAIN]),
            y_train=np.concatenate([batches[n][1] for n in CIFAR_TRAIN]),
            x_test=x_test,
            y_test=y_test,
        )


# ---------------------------------------------------------------------------------------------
# From raw files to Data


def _owned(x: np.ndarray) -> np.ndarray:
    """`x` as a writable, contiguous array of its own (torch will not wrap a read-only one)."""
    if x.flags.writeable and x.flags.c_contiguous and not isinstance(x, np.memmap):
        return x
    return np.array(x)


@dataclass(frozen=True)
class ImageFiles:
    """A labelled image data set read from files: how to find and read them, what they mean."""

    files: IdxFiles | CifarFiles
    class_names: tuple[str, ...]
    mirror_safe: bool  # whether a mirror image keeps its label (not for digits)

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        """Read the files, carve validation from the training files, normalise, place.

        The training pool is `data.n_train` images drawn by `data.seed` (all by default);
        `data.val_fraction` of it is validation. The test split is the test files, whole.
        """
        name = str(cfg["name"])
        in_memory = bool(cfg["in_memory"])
        raw = self.files.load(cfg, name, mmap=not in_memory)
        pool = pool_index(len(raw.y_train), cfg["n_train"], int(cfg["seed"]), name)
        n_val = n_validation(len(pool), float(cfg["val_fraction"]),
                             f"{len(pool):,} training images")
        train_idx, val_idx = pool[:-n_val], pool[-n_val:]

        def pixels(x: np.ndarray) -> torch.Tensor:  # bytes cross to the device, floats do not
            return torch.from_numpy(_owned(x)).to(device).float() / PIXEL_SCALE

        def labels(y: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(_owned(y)).to(device)

        train: Split | HostSplit
        if in_memory:
            x_train = pixels(raw.x_train[train_idx])
            mean, std = standardise(x_train, "image")
            train = Split((x_train - mean) / std, labels(raw.y_train[train_idx]))
        else:
            mean, std = channel_stats(raw.x_train, train_idx, PIXEL_SCALE)
            mean, std = mean.to(device), std.to(device)
            train = HostSplit(raw.x_train, raw.y_train, train_idx, PIXEL_SCALE,
                              tuple(mean.flatten().tolist()), tuple(std.flatten().tolist()),
                              str(device), int(cfg["workers"]))
        constant(std, f"data={name} ({len(train_idx):,} training images)")
        val = Split((pixels(raw.x_train[val_idx]) - mean) / std, labels(raw.y_train[val_idx]))
        test = Split((pixels(raw.x_test) - mean) / std, labels(raw.y_test))
        spec = DataSpec(name=name, task="classification", kind="image",
                        input_shape=tuple(raw.x_train.shape[1:]), num_classes=10,
                        class_names=self.class_names)
        blank = (-mean / std).flatten().tolist()  # what a black pixel becomes
        return Data(train, val, test, spec=spec,
                    norm={"mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
                    augment=build_augment(cfg["augment"], name, "image", self.mirror_safe,
                                          tuple(blank)),
                    facts={"pixel_scale": PIXEL_SCALE})  # what a stored pixel is divided by


MNIST = ImageFiles(
    IdxFiles("MNIST",
             ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "http://yann.lecun.com/exdb/mnist/"),
             ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "d53e105ee54ea40749a09fcbcd1e9432",
              "9fb629c4189551a2d022fa330f9573f3", "ec29112dd5afa0611ce80d1b7f02629c")),
    class_names=tuple(str(d) for d in range(10)),
    mirror_safe=False,
)

FASHION_MNIST = ImageFiles(
    IdxFiles("FashionMNIST",
             ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
              "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/"
              "fashion/"),
             ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "25c81989df183df01b3e8a0aad5dffbe",
              "bef4ecab320f06d8554ea6380940ec79", "bb300cfdad3c16e7a12a480ee83cd310")),
    class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                 "Sneaker", "Bag", "Ankle boot"),
    mirror_safe=True,
)

CIFAR10 = ImageFiles(
    CifarFiles(Remote("cifar-10-python.tar.gz",
                      ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                      "md5:c58f30108f718f92721af3b95e74349a")),
    class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"),
    mirror_safe=True,
)
