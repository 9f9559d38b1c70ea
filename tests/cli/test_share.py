"""Results a person can read, through the real command: file modes under umask 022 and 077,
curves.png drawn from the run's own points, a run's name in its directory, summary and the
sweep's report, a sweep's start-up stated apart from its runs' wall times, and the smoke
run's progress line."""

from __future__ import annotations

import csv
import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from dltrain.log.curves import META_KEY
from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def dltrain(*args: str, cwd: Path, umask: int) -> subprocess.CompletedProcess:
    """The real command under `umask` (run_cli's environment, the umask set in the child)."""
    script = Path(sys.executable).parent / "dltrain"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dltrain"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([*command, *args], cwd=cwd, env=env, umask=umask,
                          capture_output=True, text=True, timeout=300, check=False)


def modes(root: Path) -> dict[str, int]:
    """The permission bits of every file under `root`, by relative path."""
    return {p.relative_to(root).as_posix(): stat.S_IMODE(p.stat().st_mode)
            for p in root.rglob("*") if p.is_file()}


def drawn(path: Path) -> dict[str, int]:
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.size == (960, 272)
        return json.loads(image.text[META_KEY])


def logged(run_dir: Path) -> dict[str, int]:
    """How many points of each plotted tag metrics.jsonl holds."""
    counts: dict[str, int] = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        for tag in json.loads(line):
            if tag in ("train/loss", "train/lr") or tag.startswith("val/"):
                counts[tag] = counts.get(tag, 0) + 1
    return counts


def test_a_named_sweep_under_umask_022_is_readable_and_says_its_name(tmp_path):
    proc = dltrain("-m", "data=moons", "trainer=smoke", "optim.lr=0.01,0.1", "name=lr-study",
                   cwd=tmp_path, umask=0o022)
    assert proc.returncode == 0, proc.stderr
    (sweep,) = (tmp_path / "outputs" / "sweeps").iterdir()
    assert "_lr-study_" in sweep.name  # the name in the sweep's directory, hence TensorBoard's
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    # the name is the sweep's: not again in every job's directory
    assert [p.name for p in jobs] == ["0_data=moons,optim.lr=0.01,trainer=smoke",
                                      "1_data=moons,optim.lr=0.1,trainer=smoke"]

    files = modes(sweep)
    for name in ("report.md", "report.csv", "runs.csv", "best.yaml",
                 "plots/objective_vs_optim.lr.png",
                 *(f"{job.name}/{f}" for job in jobs
                   for f in ("summary.json", "checkpoints/last.pt", "checkpoints/best.pt",
                             "curves.png", "metrics.jsonl"))):
        assert files[name] == 0o644, (name, oct(files[name]))
    assert all(m & 0o044 == 0o044 for m in files.values()), files  # nothing left unreadable

    summaries = [json.loads((job / "summary.json").read_text()) for job in jobs]
    assert [s["name"] for s in summaries] == ["lr-study", "lr-study"]
    for job in jobs:  # curves.png holds every point the run logged
        assert drawn(job / "curves.png") == logged(job)
        assert logged(job)["train/loss"] == 4 and logged(job)["val/loss"] == 1  # 20 steps, 5 apart

    # the first job's process imported what the others found imported: stated apart
    assert summaries[0]["startup_s"] > 0.05 and summaries[1]["startup_s"] < 0.05
    runs = list(csv.DictReader((sweep / "runs.csv").open()))
    assert [r["name"] for r in runs] == ["lr-study", "lr-study"]
    assert [float(r["startup_s"]) for r in runs] == [s["startup_s"] for s in summaries]
    assert [float(r["wall_s"]) for r in runs] == [s["wall_s"] for s in summaries]
    report = (sweep / "report.md").read_text()
    header = next(line for line in report.splitlines() if line.startswith("| name"))
    assert header.endswith("| wall s | startup s |")
    assert report.count("| lr-study |") + report.count("| **lr-study** |") == 2
    assert "startup s what the first run of a process paid" in report

    # the smoke run's line: 20 steps of a 28-step epoch, not "epoch 0.714/2"
    assert "step 20/20 (0.714 epoch)" in proc.stdout + proc.stderr
    assert "epoch 0.714/2" not in proc.stdout + proc.stderr
    assert re.search(r"│ epochs +│ +< 1 │", proc.stdout)
    assert not re.search(r"│ epochs +│ +0 │", proc.stdout)


def test_a_run_under_umask_077_is_private_and_a_bad_name_is_refused(tmp_path):
    proc = dltrain("data=moons", "trainer=smoke", "name=solo", cwd=tmp_path, umask=0o077)
    assert proc.returncode == 0, proc.stderr
    (run_dir,) = (tmp_path / "outputs" / "runs").iterdir()
    assert "_solo_" in run_dir.name
    files = modes(run_dir)
    for name in ("summary.json", "checkpoints/last.pt", "checkpoints/best.pt", "curves.png"):
        assert files[name] == 0o600, (name, oct(files[name]))
    assert all(m & 0o077 == 0 for m in files.values()), files
    assert json.loads((run_dir / "summary.json").read_text())["name"] == "solo"
    assert drawn(run_dir / "curves.png") == logged(run_dir)

    bad = run_cli("data=moons", "trainer=smoke", "name=a/b", cwd=tmp_path)
    assert bad.returncode == 2
    assert "name=a/b must be null or a name of at most 80 letters" in bad.stderr + bad.stdout
    assert "Traceback" not in bad.stderr
    assert len(list((tmp_path / "outputs" / "runs").iterdir())) == 1  # nothing made for it
