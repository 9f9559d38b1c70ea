"""data=images: a folder of labelled images, the layout of torchvision's ImageFolder.

`data.root` holds one folder per class (`ROOT/<class>/*.png`, sub-folders included), or
`ROOT/train/<class>/...` with `ROOT/val/<class>/...` and `ROOT/test/<class>/...` beside it when
the user has split the images already; a split without its folder is carved from the training
images by `data.val_fraction` / `data.test_fraction`, drawn by `data.seed`. Class names are the
folder names, sorted as ImageFolder sorts them (so its label numbers and ours agree).

Reading happens in two passes. The first opens every file's header only (size and mode: no
pixels), which is enough to decide the common size (`data.size`, default the most common
one) and grey or colour (`data.channels`, default colour when any file is colour); the split
is drawn on the file list then, so `data.n_train` decodes only the images it keeps. The
second pass decodes, converts and resizes into one preallocated uint8 array (N, C, H, W), on
threads (Pillow releases the GIL while it decodes): pixels stay bytes until the device, where
they become floats and are normalised per channel, as the built-in image sets are.

16-bit and floating-point images (microscopy, fields) keep their values (float32, scale 1);
mixed with 8-bit images they have no common scale and are refused. Nothing is written into
the data folder.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from dltrain.data.augment import build_augment
from dltrain.data.checks import constant, finite, input_folder
from dltrain.data.owned import carve, subsample
from dltrain.data.prepare import standardise
from dltrain.data.spec import Data, DataSpec, Split
from dltrain.errors import ConfigError
from dltrain.rules import suggest

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
SPLITS = ("train", "val", "test")
PIXEL_SCALE = 255.0  # 8-bit pixels -> [0, 1] before normalisation, as data=mnist does
# Modes holding more than 8 bits a value: their numbers are kept (as float32), not squeezed.
DEEP_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N", "I;32", "I;32L", "I;32B"})
GREY_MODES = frozenset({"1", "L", "LA", "La"})
# Below this many files, starting threads costs more than they save. Decoding runs in Pillow's
# C code without the GIL; opening a file is Python. 2,000 RGB 32x32 PNGs (min of 5, a 2-core
# machine under load): 0.88 s on one thread, 0.55 s on four; 300 320x320 JPEGs resized to
# 128x128: 1.12 s, 0.47 s.
PARALLEL_FROM = 64
_WHERE = "ROOT/<class>/*.png"


@dataclass(frozen=True)
class Labelled:
    """Image files of one split and their class numbers (int64, into Layout.classes)."""

    paths: tuple[Path, ...]
    labels: np.ndarray

    def take(self, index: np.ndarray) -> Labelled:
        return Labelled(tuple(self.paths[i] for i in index), self.labels[index])


@dataclass(frozen=True)
class Layout:
    """What the folder holds: class names, the training pool, and the user's own val/test."""

    root: Path
    classes: tuple[str, ...]
    pool: Labelled
    val: Labelled | None
    test: Labelled | None
    split_folders: bool  # ROOT/train/<class>/, not ROOT/<class>/


@dataclass(frozen=True)
class Header:
    """What a file's header says, read without decoding its pixels."""

    path: Path
    size: tuple[int, int]  # (H, W)
    mode: str
    colour: bool


@dataclass(frozen=True)
class Pixels:
    """How every image is turned into an array: shape (C, H, W), and 8-bit or deep values."""

    channels: int
    size: tuple[int, int]  # (H, W)
    deep: bool  # 16-bit or float images: float32 values, scale 1

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.float32 if self.deep else np.uint8)

    @property
    def scale(self) -> float:
        return 1.0 if self.deep else PIXEL_SCALE


# ---------------------------------------------------------------------------------------------
# The folder


def _folders(where: Path) -> list[Path]:
    """Sub-folders of `where`, sorted by name, hidden ones (.ipynb_checkpoints) left out."""
    return sorted((p for p in where.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.name)


def _images(folder: Path) -> list[Path]:
    """Image files under `folder` (sub-folders included, as ImageFolder reads them), sorted."""
    found = []
    for here, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(here) / f for f in files
                     if not f.startswith(".") and f.lower().endswith(SUFFIXES))
    return sorted(found)


def _class_folders(where: Path, root_setting: str) -> dict[str, list[Path]]:
    """{class name: its image files} of one folder of class folders."""
    folders = _folders(where)
    if not folders:
        raise ConfigError(f"data.root={root_setting}: {where} holds no class folders; put "
                          f"each class's images in a folder named after the class "
                          f"({_WHERE}).")
    return {f.name: _images(f) for f in folders}


def _labelled(files: dict[str, list[Path]], classes: Sequence[str]) -> Labelled:
    number = {name: i for i, name in enumerate(classes)}
    paths = [p for name in files for p in files[name]]
    labels = np.array([number[name] for name in files for _ in files[name]], dtype=np.int64)
    return Labelled(tuple(paths), labels)


def find_layout(root_setting: str) -> Layout:
    """The classes and files under `data.root`, checked: every refusal is one sentence."""
    root = Path(root_setting).expanduser()
    if not root.exists():
        raise ConfigError(f"data.root={root_setting} does not exist; data=images reads a "
                          f"folder of class folders ({_WHERE}).")
    if not root.is_dir():
        raise ConfigError(f"data.root={root_setting} is a file; data=images reads a folder "
                          f"of class folders ({_WHERE}).")
    input_folder(root, "data.root", root_setting, "data=images reads a folder")  # listable
    top = {f.name: f for f in _folders(root)}
    split = [name for name in SPLITS if name in top]
    if split and "train" not in top:
        raise ConfigError(f"data.root={root_setting} holds {'/ and '.join(split)}/ but no "
                          "train/: split folders need ROOT/train/<class>/ (val/ and test/ are "
                          "optional), class folders go directly in ROOT.")
    if "train" in top and set(top) - set(SPLITS):
        stray = ", ".join(f"{n}/" for n in top if n not in SPLITS)
        raise ConfigError(f"data.root={root_setting} holds train/ and also {stray}: beside "
                          "train/, only val/ and test/ may be there.")
    pool_root = top.get("train", root)
    pool_files = _class_folders(pool_root, root_setting)
    if not any(pool_files.values()):
        raise ConfigError(f"data.root={root_setting} holds no images ({', '.join(SUFFIXES)}) "
                          f"in its class folders {', '.join(pool_files)}.")
    for name, paths in pool_files.items():
        if not paths:
            raise ConfigError(f"Class folder {pool_root / name} holds no images "
                              f"({', '.join(SUFFIXES)}); add its images or remove it.")
        if len(paths) == 1:
            raise ConfigError(f"Class '{name}' has a single image ({paths[0]}); a class needs "
                              "at least two, one to train on and one to check.")
    classes = tuple(pool_files)
    held = {}
    for name in ("val", "test"):
        if name not in top:
            held[name] = None
            continue
        files = _class_folders(top[name], root_setting)
        unknown = [c for c in files if c not in pool_files]
        if unknown:
            near = suggest(unknown[0], classes)
            hint = f"; did you mean {near}?" if near else "."
            raise ConfigError(f"{top[name]} holds class folder{'s' if len(unknown) > 1 else ''}"
                              f" {', '.join(unknown)} that {top['train']} does not have (its "
                              f"classes: {', '.join(classes)}){hint}")
        if not any(files.values()):
            raise ConfigError(f"{top[name]} holds no images ({', '.join(SUFFIXES)}) in its "
                              "class folders; fill it or remove it.")
        held[name] = _labelled(files, classes)
    return Layout(root, classes, _labelled(pool_files, classes), held["val"], held["test"],
                  split_folders="train" in top)


# ---------------------------------------------------------------------------------------------
# Headers, and what they decide


_T = TypeVar("_T")
_R = TypeVar("_R")


def _each(fn: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
    """fn over items, on threads when there are enough of them to repay the threads."""
    if len(items) < PARALLEL_FROM:
        return [fn(item) for item in items]
    # Python's default pool (cores + 4, at most 32): opening a file waits on the disk too
    with ThreadPoolExecutor() as pool:
        return list(pool.map(fn, items))


def _unreadable(path: Path, err: Exception) -> ConfigError:
    if isinstance(err, PermissionError):
        return ConfigError(f"{path} cannot be read: permission denied.")
    return ConfigError(f"{path} is not a readable image ({type(err).__name__}: {err}); "
                       "replace it or remove it.")


def _palette_colour(img: Any) -> bool:
    """Whether a palette image uses any colour that is not a shade of grey."""
    palette = img.getpalette() or []
    return any(len(set(palette[i:i + 3])) > 1 for i in range(0, len(palette) - 2, 3))


def read_header(path: Path) -> Header:
    """The size and mode of one image file, from its header (no pixels are decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            mode = img.mode
            colour = (_palette_colour(img) if mode in ("P", "PA")
                      else mode not in GREY_MODES and mode not in DEEP_MODES)
            return Header(path, (img.height, img.width), mode, colour)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise _unreadable(path, err) from None


def common_size(headers: Iterable[Header], setting: Any) -> tuple[int, int]:
    """(H, W) from data.size: an int (square), [H, W], or null for the most common size."""
    if setting is None:
        # Counter keeps first-seen order among ties, and headers come in sorted file order
        return Counter(h.size for h in headers).most_common(1)[0][0]
    if isinstance(setting, int):
        return (setting, setting)
    return (int(setting[0]), int(setting[1]))


def pixels_for(headers: Sequence[Header], size: tuple[int, int], channels: Any,
               root_setting: str) -> Pixels:
    """Grey or colour, 8-bit or deep, from the files' modes and data.channels (1, 3 or null).

    Grey and colour files mix (grey is replicated into RGB when any file is colour; alpha is
    dropped, as torchvision's loader does); 8-bit and 16-bit/float files do not.
    """
    deep = [h for h in headers if h.mode in DEEP_MODES]
    if deep and len(deep) < len(headers):
        byte = next(h for h in headers if h.mode not in DEEP_MODES)
        raise ConfigError(f"data.root={root_setting} mixes 8-bit images ({byte.path}, mode "
                          f"{byte.mode}) with 16-bit or floating-point ones ({deep[0].path}, "
                          f"mode {deep[0].mode}), which share no scale; save them all at one "
                          "depth.")
    if channels is None:
        channels = 3 if any(h.colour for h in headers) else 1
    return Pixels(int(channels), size, deep=bool(deep))


# ---------------------------------------------------------------------------------------------
# Pixels


def decode(path: Path, pixels: Pixels) -> np.ndarray:
    """One image file as a (C, H, W) array of `pixels.dtype`, converted and resized."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            if pixels.deep:
                img = img.convert("F")  # values kept: a 16-bit count stays that count
            else:
                if img.mode in ("P", "PA") and "transparency" in img.info:
                    img = img.convert("RGBA")  # Pillow's own advice for such palettes
                img = img.convert("RGB" if pixels.channels == 3 else "L")
            height, width = pixels.size
            if (img.height, img.width) != (height, width):
                img = img.resize((width, height), Image.Resampling.BILINEAR)
            array = np.asarray(img, dtype=pixels.dtype)
    except (OSError, ValueError, SyntaxError) as err:  # a truncated or corrupt file
        raise _unreadable(path, err) from None
    if pixels.deep:  # floating-point pixels may be NaN or infinite: named here, per file
        finite(array[None], str(path), "pixels")
    if array.ndim == 2:  # grey: one channel, replicated when colour was asked for
        return np.broadcast_to(array, (pixels.channels, *array.shape))
    return array.transpose(2, 0, 1)


def decode_all(paths: Sequence[Path], pixels: Pixels) -> np.ndarray:
    """Every file decoded into one preallocated (N, C, H, W) array, in parallel."""
    out = np.empty((len(paths), pixels.channels, *pixels.size), dtype=pixels.dtype)

    def fill(i: int) -> None:
        out[i] = decode(paths[i], pixels)

    _each(fill, range(len(paths)))
    return out


# ---------------------------------------------------------------------------------------------
# Splits


def split_layout(layout: Layout, cfg: Mapping[str, Any]) -> tuple[Labelled, Labelled, Labelled]:
    """(train, val, test) file lists: the user's val/ and test/ folders where given, else
    carved from the pool and subsampled by data.n_train exactly as every file source's are
    (dltrain.data.owned), on the file list, so that only the kept images are decoded."""
    pool, where = layout.pool, f"data.root={cfg['root']}"
    train, val, test = carve(len(pool.paths), cfg, need_val=layout.val is None,
                             need_test=layout.test is None, chronological=False, where=where)
    train = subsample(train, cfg["n_train"], int(cfg["seed"]), where)
    return (pool.take(train),
            layout.val if layout.val is not None else pool.take(val),
            layout.test if layout.test is not None else pool.take(test))


# ---------------------------------------------------------------------------------------------
# The data set


@dataclass(frozen=True)
class ImageFolder:
    """data=images: the builder SOURCES names."""

    # Content is unknown: a mirror image may change a label (letters, arrows, left/right
    # anatomy), so flip=auto does not flip; data.augment.flip=true does.
    mirror_safe: bool = False

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        name, root_setting = str(cfg["name"]), str(cfg["root"])
        layout = find_layout(root_setting)
        everything = [*layout.pool.paths, *(layout.val.paths if layout.val else ()),
                      *(layout.test.paths if layout.test else ())]
        headers = _each(read_header, everything)
        size = common_size(headers, cfg["size"])
        pixels = pixels_for(headers, size, cfg["channels"], root_setting)
        train, val, test = split_layout(layout, cfg)

        def place(files: Labelled) -> torch.Tensor:  # bytes cross to the device, floats do not
            x = torch.from_numpy(decode_all(files.paths, pixels)).to(device).float()
            return x.div_(pixels.scale)

        x_train = place(train)
        mean, std = standardise(x_train, "image")
        constant(std, f"data.root={root_setting} ({len(train.paths):,} training images)")
        splits = [Split(x_train.sub_(mean).div_(std), torch.from_numpy(train.labels).to(device))]
        splits += [Split(place(s).sub_(mean).div_(std), torch.from_numpy(s.labels).to(device))
                   for s in (val, test)]
        spec = DataSpec(name=name, task="classification", kind="image",
                        input_shape=(pixels.channels, *size), num_classes=len(layout.classes),
                        class_names=layout.classes)
        where = "train/val/test folders" if layout.split_folders else "class folders"
        facts = {
            "task": "classification",
            "why": (f"classification: {len(headers):,} images in {len(layout.classes)} "
                    f"{where} of {root_setting}"),
            "classes": list(layout.classes),
            "image_size": list(size),
            "channels": pixels.channels,
            "pixel_scale": pixels.scale,
            "modes": sorted({h.mode for h in headers}),
            "samples": {"train": len(train.paths), "val": len(val.paths),
                        "test": len(test.paths)},
        }
        blank = tuple((-mean / std).flatten().tolist())  # what a black pixel becomes
        return Data(*splits, spec=spec,
                    norm={"mean": mean.flatten().tolist(), "std": std.flatten().tolist()},
                    augment=build_augment(cfg["augment"], name, "image", self.mirror_safe,
                                          blank),
                    facts=facts)
