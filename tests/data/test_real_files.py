"""Real data sets, where a folder of their files is at hand (opt-in: CI has none, and no network).

    DLTRAIN_REAL_FASHION_MNIST=DIR pytest tests/data/test_real_files.py

DIR holds Fashion-MNIST's four IDX files (gzipped or not), as Zalando publishes them or as
Debian's dataset-fashion-mnist package installs them (/usr/share/datasets/fashion-mnist). The
tests copy them into the layouts dltrain reads and train the default CNN briefly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dltrain.run import run

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")
FOLDER = os.environ.get("DLTRAIN_REAL_FASHION_MNIST")

pytestmark = pytest.mark.skipif(not FOLDER, reason="set DLTRAIN_REAL_FASHION_MNIST=DIR")


def files(folder: Path) -> list[Path]:
    found = [next((p for p in (folder / n, folder / f"{n}.gz") if p.exists()), None)
             for n in NAMES]
    if None in found:
        pytest.skip(f"{folder} lacks some of {', '.join(NAMES)}")
    return found  # type: ignore[return-value]


@pytest.mark.parametrize("layout", ["root", "torchvision"])
def test_a_small_cnn_learns_real_fashion_mnist(make_cfg, tmp_path, layout):
    target = tmp_path / "data" / ("FashionMNIST/raw" if layout == "torchvision" else "")
    target.mkdir(parents=True, exist_ok=True)
    for path in files(Path(str(FOLDER))):
        shutil.copy(path, target / path.name)
    cfg = make_cfg("data=fashion_mnist", f"data.root={tmp_path / 'data'}", "data.download=false",
                   "model=cnn", "trainer.max_epochs=1", "trainer.device=cpu", "logger=none")
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed", result.summary.get("error")
    # measured (2 CPU cores, 8 s): 0.855 after one epoch; 0.906 after the default 10
    assert result.summary["test"]["accuracy"] > 0.83
    assert result.summary["steps"] == 421  # 54,000 training images, full batches of 128
