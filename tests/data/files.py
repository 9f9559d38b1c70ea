"""Small data files in the exact formats of the real ones, and a local HTTP server.

MNIST-style IDX files (gzipped or not, flat or in torchvision's layout) hold glyph digits, so
a model can learn from them; CIFAR-10 batches are pickled dicts as the python version ships
them, alone or in the .tar.gz archive.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import http.server
import io
import pickle
import socket
import struct
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from dltrain.data.glyphs import glyphs
from dltrain.data.vision import CIFAR_DIR, IDX_FILES

_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
          np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """`array` as an IDX file: magic (0, 0, type, ndim), big-endian dims, big-endian data."""
    if array.dtype.itemsize > 1:
        array = array.astype(array.dtype.newbyteorder(">"))
    header = bytes([0, 0, _CODES[array.dtype], array.ndim])
    return header + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    content = idx_bytes(array)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if gz else content)
    return path


def digits(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` glyph digits as MNIST stores them: (n, 28, 28) uint8 pixels and uint8 labels."""
    x, y = glyphs(n, 0.0, torch.Generator().manual_seed(seed))
    return (x[:, 0] * 255).round().to(torch.uint8).numpy(), y.to(torch.uint8).numpy()


def mnist_arrays(n_train: int, n_test: int) -> dict[str, np.ndarray]:
    (x_train, y_train), (x_test, y_test) = digits(n_train, 1), digits(n_test, 2)
    return dict(zip(IDX_FILES, (x_train, y_train, x_test, y_test), strict=True))


def fake_mnist(folder: Path, n_train: int = 300, n_test: int = 100, gz: bool = True
               ) -> dict[str, np.ndarray]:
    """The four MNIST files in `folder`; returns the arrays written, by file stem."""
    arrays = mnist_arrays(n_train, n_test)
    for stem, array in arrays.items():
        write_idx(folder / (f"{stem}.gz" if gz else stem), array, gz=gz)
    return arrays


def cifar_batches(n: int, seed: int = 0) -> dict[str, dict]:
    """Five training batches and a test batch of `n` random images each, as CIFAR pickles them
    (Python 2's str keys read back as str with encoding='latin1')."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {name: {"batch_label": f"batch {name}",
                   "labels": rng.integers(0, 10, n).tolist(),
                   "data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                   "filenames": [f"img_{i}.png" for i in range(n)]}
            for name in names}


def write_cifar_folder(root: Path, batches: dict[str, dict]) -> Path:
    folder = root / CIFAR_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": ["a"] * 10}, protocol=2))
    return folder


def write_cifar_archive(path: Path, batches: dict[str, dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, batch in batches.items():
            content = pickle.dumps(batch, protocol=2)
            info = tarfile.TarInfo(f"{CIFAR_DIR}/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


def md5(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:  # keep pytest's output clean
        pass


@contextlib.contextmanager
def serve(folder: Path) -> Iterator[str]:
    """Serve `folder` over HTTP on 127.0.0.1 from a thread; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was just free)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"
