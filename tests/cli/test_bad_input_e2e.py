"""Bad input through the real `dltrain` command (issue 21): each is one sentence on stderr,
exit code 2 and no traceback, before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dltrain.data.vision import IDX_FILES
from tests.conftest import run_cli_batch
from tests.data.files import fake_mnist, write_idx


def _files(tmp_path: Path) -> dict[str, str]:
    """What the cases name: a plain file, a folder, MNIST files with NaN pixels."""
    (tmp_path / "passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (tmp_path / "folder.csv").mkdir()
    nan = tmp_path / "nan"
    fake_mnist(nan, n_train=50, n_test=20, gz=False)
    x = np.random.default_rng(0).random((50, 28, 28)).astype(">f4")
    x[3, 4, 5] = np.nan
    write_idx(nan / IDX_FILES[0], x)
    return {"FILE": str(tmp_path / "passwd"), "FOLDER": str(tmp_path / "folder.csv"),
            "NAN": str(nan)}


CASES = {
    # 5 x 10^12 parameters: more than any machine holds
    "model": (["data=moons", "model.hidden=[1000000000000]"],
        r"model=mlp has 5,000,000,000,002 parameters \(the largest layer, hidden\.0\.linear, "
        r"holds 3,000,000,000,000\): they need about 80\.0 TB with their gradients and Adam's two "
        r"moments, and this machine has [\d.]+ [kMGT]?B free; use a smaller model"),
    "n_train": (["data=moons", "data.n_train=10000000000000"],
        r"data\.n_train=10000000000000 \(16 bytes a sample of data=moons, and the draw's working "
        r"memory\) needs about 640 TB, and this machine has"),
    "seed": (["trainer.seed=4294967296"],
        r"trainer\.seed=4294967296 must be a whole number >= 0 and <= 4294967295"),
    "accumulate": (["data=moons", "data.n_train=200", "trainer.accumulate=5"],
        r"trainer\.accumulate=5 takes 5 batches for one optimiser step, but an epoch of "
        r"data=moons has only 2 batches of 64; use trainer\.accumulate=2 or less"),
    "root-file": (["data=mnist", "data.root=FILE"],
        r"data\.root=\S+passwd is a file, not a folder; data=mnist reads its files from a folder"),
    "path-folder": (["data=table", "data.path=FOLDER", "data.target=y"],
        r"data\.path=\S+folder\.csv is a directory, not a file"),
    "nan-pixels": (["data=mnist", "data.root=NAN", "data.download=false"],
        r"\S+train-images-idx3-ubyte holds 1 NaN or infinite pixels \(of 39,200; the first in "
        r"sample 3\)"),
}


@pytest.fixture(scope="module")
def refusals(tmp_path_factory) -> tuple[Path, dict]:
    """Every case, one `dltrain` command each, in one process; a run directory of its own."""
    tmp_path = tmp_path_factory.mktemp("bad_input")
    names = _files(tmp_path)
    def named(a: str) -> str:
        for key, value in names.items():
            a = a.replace(f"={key}", f"={value}")
        return a

    commands = [[named(a) for a in args]
                + ["trainer=smoke", f"hydra.run.dir={tmp_path / name}"]
                for name, (args, _) in CASES.items()]
    return tmp_path, dict(zip(CASES, run_cli_batch(commands, cwd=tmp_path), strict=True))


@pytest.mark.e2e
@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_sentence_and_exit_2(refusals, name):
    import re

    tmp_path, procs = refusals
    proc, said = procs[name], CASES[name][1]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(r"^dltrain: " + said, proc.stderr, re.MULTILINE), proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / name / "checkpoints").exists() or not any(
        (tmp_path / name / "checkpoints").iterdir())  # nothing trained
