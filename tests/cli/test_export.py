"""`dltrain export` through the real console script: the default file, its printed check,
a model that answers in the data's units on batches of 1 and 7; --out; exit code 2 with one
sentence for bad arguments. The command's path is the same for every format: the formats in
depth (ONNX with onnxruntime included) are tests/use/test_export.py's, in-process, where
torch.onnx's exporter starts once for all of them."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import run_cli
from tests.use.test_export import by_hand, close, encoded, sites, table_run_in

# TorchScript is what the format asks for, though PyTorch now marks torch.jit as deprecated
pytestmark = [pytest.mark.e2e,
              pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated")]


@pytest.fixture(scope="module")
def table_run(tmp_path_factory) -> Path:
    return table_run_in(tmp_path_factory.mktemp("table"))


def test_export_writes_the_default_file_and_checks_it(table_run):
    proc = run_cli("export", str(table_run), "--format", "torchscript", cwd=table_run.parent)
    assert proc.returncode == 0, proc.stderr
    path = table_run / "export" / "model.pt"
    line = re.fullmatch(
        rf"wrote {re.escape(str(path))}: checked with torch.jit.load on 64 test samples of the "
        r"run's data; largest difference (\S+) \(relative (\S+), limit 0.0001\)\n", proc.stdout)
    assert line, proc.stdout
    assert float(line[2]) <= 1e-4
    model = torch.jit.load(str(path))
    rows = encoded(sites())
    for n in (1, 7):  # the batch axis is free
        x = rows[:n]
        with torch.no_grad():
            got = model(torch.from_numpy(x)).numpy()
        assert got.shape == (n, 1)
        assert close(got, by_hand(table_run, x)) < 1e-4


def test_export_torchscript_to_out(table_run, tmp_path):
    out = tmp_path / "deploy" / "house.pt"
    proc = run_cli("export", str(table_run), "--format", "torchscript", "--out", str(out),
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {out}: checked with torch.jit.load on 64 test "
                                  "samples of the run's data; largest difference ")
    assert sorted(p.name for p in out.parent.iterdir()) == ["house.pt"]  # no temporary left
    x = encoded(sites().head(20))
    with torch.no_grad():
        got = torch.jit.load(str(out))(torch.from_numpy(x)).numpy()
    assert close(got, by_hand(table_run, x)) < 1e-4
    assert abs(np.mean(got) - sites()["y"].mean()) < sites()["y"].std()  # in the data's units


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "onx"], "dltrain: --format onx is not one of onnx, torchscript, "
                          "safetensors; did you mean onnx?\n"),
    (["--format", "pickle"], "dltrain: --format pickle is not one of onnx, torchscript, "
                             "safetensors.\n"),
])
def test_a_bad_format_is_one_sentence_and_exit_2(table_run, tmp_path, args, message):
    proc = run_cli("export", str(table_run), *args, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr == message


def test_missing_format_is_refused_before_anything_loads(tmp_path):
    proc = run_cli("export", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "the following arguments are required: --format" in proc.stderr
