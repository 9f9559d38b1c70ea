"""Character-level language modelling from any UTF-8 text file.

The file is split into contiguous parts — train, then validation, then test at its end — by
`data.val_fraction` and `data.test_fraction`, so no window of one part overlaps another. The
vocabulary is the set of characters of the train part, sorted, after id 0, which is reserved
for characters the train part never shows (they can occur in validation and test). It is saved
in the DataSpec (and so in every checkpoint), which decodes a model's output on its own.

Validation and test are cut into consecutive, non-overlapping windows of `data.block_size`
tokens, each with its targets shifted by one; training draws windows at random offsets from
the whole train stream (batches.WindowBatches).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.data.augment import build_augment
from dltrain.data.checks import input_file, input_folder
from dltrain.data.download import Remote, obtain
from dltrain.data.spec import Data, DataSpec, Split
from dltrain.errors import ConfigError

UNKNOWN = "\ufffd"  # the replacement character stands for id 0, every unseen character


def read_text(path: Path) -> str:
    """The text of a UTF-8 file (a byte-order mark is dropped); ConfigError if it is not one."""
    path = Path(path)
    input_file(path, "data.path", path)  # a folder, a device, a file that may not be read
    if not path.is_file():
        raise ConfigError(f"data.path={path}: there is no such file.")
    content = path.read_bytes()
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path} is not UTF-8 text (byte 0x{content[err.start]:02x} at "
                          f"offset {err.start:,} does not decode).") from None


def build_vocab(text: str) -> tuple[str, ...]:
    """The characters of `text`, sorted, after the reserved unknown character (id 0)."""
    return (UNKNOWN, *sorted(set(text) - {UNKNOWN}))


def encode(text: str, vocab: Sequence[str]) -> np.ndarray:
    """Ids (int64) of the characters of `text`; a character not in `vocab` is id 0.

    Vectorised over code points: a few hundred MB of text encode in seconds.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
    known = np.array([ord(c) for c in vocab[1:]], dtype=np.uint32)  # sorted: code point order
    if not len(known):
        return np.zeros(len(codes), dtype=np.int64)
    pos = np.minimum(np.searchsorted(known, codes), len(known) - 1)
    return np.where(known[pos] == codes, pos + 1, 0).astype(np.int64)


def decode(ids: Sequence[int] | torch.Tensor, vocab: Sequence[str]) -> str:
    """The text that `ids` stand for (unknown characters as U+FFFD)."""
    values = ids.tolist() if isinstance(ids, torch.Tensor) else ids
    return "".join(vocab[i] for i in values)


def windows(tokens: torch.Tensor, block_size: int) -> Split:
    """Consecutive non-overlapping windows of a stream: x (N, T), y (N, T) = x shifted by one.

    Both are views of `tokens`: no copy is made.
    """
    n = (len(tokens) - 1) // block_size
    x = tokens[:n * block_size].view(n, block_size)
    y = tokens[1:n * block_size + 1].view(n, block_size)
    return Split(x, y)


def _part_sizes(n: int, cfg: Mapping[str, Any], path: Path) -> tuple[int, int, int]:
    """(train, val, test) characters of a text of `n`, each long enough for one window."""
    val_fraction, test_fraction = float(cfg["val_fraction"]), float(cfg["test_fraction"])
    n_val, n_test = round(n * val_fraction), round(n * test_fraction)
    n_train = n - n_val - n_test
    need = int(cfg["block_size"]) + 1
    parts = ((n_train, "training", f"data.val_fraction={val_fraction} and "
              f"data.test_fraction={test_fraction} leave"),
             (n_val, "validation", f"data.val_fraction={val_fraction} leaves"),
             (n_test, "testing", f"data.test_fraction={test_fraction} leaves"))
    for size, part, leaves in parts:
        if size < need:
            raise ConfigError(f"{leaves} {max(size, 0):,} of the {n:,} characters of {path} "
                              f"for {part}, fewer than data.block_size+1={need}.")
    return n_train, n_val, n_test


@dataclass(frozen=True)
class TextFile:
    """A text data set: the file `data.path`, or a known text downloaded into `data.root`."""

    remote: Remote | None = None  # a preset's canonical copy, used when data.path is null

    def path(self, cfg: Mapping[str, Any], name: str) -> Path:
        if cfg["path"]:
            return Path(str(cfg["path"])).expanduser()
        if self.remote is None:
            raise ConfigError(f"data={name} needs data.path=FILE, a UTF-8 text file.")
        # Only a preset with a canonical copy (conf/data/tiny_shakespeare.yaml) has root,
        # download and mirror; data=text, which has none, stopped above.
        root = Path(str(cfg["root"])).expanduser()
        input_folder(root, "data.root", cfg["root"],
                     f"data={name} keeps {self.remote.name} in a folder")
        if not (root / self.remote.name).is_file():
            obtain([self.remote], root, what=f"data={name}", download=bool(cfg["download"]),
                   mirror=cfg["mirror"])
        return root / self.remote.name

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        """Read, split, encode and place a text; windows of `data.block_size` characters."""
        name = str(cfg["name"])
        build_augment(cfg["augment"], name, "tokens", False, ())  # refuses reg=[augment]
        path = self.path(cfg, name)
        text = read_text(path)
        n_train, n_val, _ = _part_sizes(len(text), cfg, path)
        vocab = build_vocab(text[:n_train])
        ids = torch.from_numpy(encode(text, vocab)).to(device)
        train, val, test = ids[:n_train], ids[n_train:n_train + n_val], ids[n_train + n_val:]
        block = int(cfg["block_size"])
        spec = DataSpec(name=name, task="language_model", kind="tokens", input_shape=(block,),
                        vocab_size=len(vocab), vocab=vocab)
        return Data(windows(train, block), windows(val, block), windows(test, block),
                    spec=spec, tokens=train)


TINY_SHAKESPEARE = TextFile(Remote(
    "tiny_shakespeare.txt",
    ("https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
     "input.txt",),
    # as published with TensorFlow Datasets' tiny_shakespeare (1,115,394 bytes)
    "sha256:86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
))
