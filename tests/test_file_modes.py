"""Files are created with the process's umask, atomic writes included (tempfile.mkstemp alone
makes them 0600): a colleague sharing the folder can read a run under umask 022, nobody else
can under umask 077."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from dltrain.io import current_umask, write_json


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def in_subprocess(code: str, umask: int, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, umask=umask,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_an_atomic_write_gets_the_mode_the_umask_implies(tmp_path, umask):
    code = ("from dltrain.io import atomic_write, current_umask, write_json\n"
            "write_json('a.json', {'x': 1})\n"
            "atomic_write('b.bin', lambda f: f.write(b'x'))\n"
            "print(oct(current_umask()))\n")
    proc = in_subprocess(code, umask, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == oct(umask)  # read from /proc without changing it
    for name in ("a.json", "b.bin"):
        assert mode(tmp_path / name) == 0o666 & ~umask
    assert not list(tmp_path.glob(".*.tmp"))


def test_the_umask_is_read_without_being_changed(tmp_path):
    before = os.umask(0o027)
    try:
        assert current_umask() == 0o027
        write_json(tmp_path / "x.json", [1])
        assert mode(tmp_path / "x.json") == 0o640
        assert current_umask() == 0o027  # left as it was
    finally:
        os.umask(before)
