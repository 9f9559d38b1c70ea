"""Shared fixtures: composing configs exactly as the command line does."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dltrain.cli import CONFIG_NAME, conf_dir

ROOT = Path(__file__).resolve().parents[1]

# The suite's workers (pytest -n 2) share the machine's cores: one torch thread each, here and
# in every command a test starts. With torch's default, a thread a core, each process's
# OpenMP threads spun waiting for a core the other held, and steps ran several times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """Compose `conf/train.yaml` with overrides, as `dltrain OVERRIDES` would."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
            return compose(CONFIG_NAME, overrides=list(overrides))

    return _compose


def _command_env(env: dict | None) -> dict:
    """A test command's environment: this one, unbuffered, with `env` on top, and without
    HYDRA_FULL_ERROR (a user's command answers bad input in one sentence, not a traceback)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return full_env


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """The real `dltrain` console script in a subprocess (`python -m dltrain` if not installed)."""
    script = Path(sys.executable).parent / "dltrain"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dltrain"]
    return subprocess.run([*command, *args], cwd=cwd, env=_command_env(env),
                          capture_output=True, text=True, timeout=timeout, check=False)


# One process runs each case through `dltrain.cli.main` (the console script's own entry
# point, the same code as a `dltrain` command) with its stdout and stderr captured apart.
_BATCH = """
import contextlib, io, json, sys, traceback
from dltrain.cli import main
results = []
for args in json.loads(sys.argv[1]):
    out, err, code = io.StringIO(), io.StringIO(), 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
        except SystemExit as end:
            code = end.code if isinstance(end.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 1
    results.append([code, out.getvalue(), err.getvalue()])
sys.__stdout__.write("\\n@@DLTRAIN-BATCH@@" + json.dumps(results))
"""


def run_cli_batch(cases: Sequence[Sequence[str]], cwd: Path, timeout: float = 300,
                  env: dict | None = None) -> list[subprocess.CompletedProcess]:
    """Several `dltrain` commands, one after another in one process, each with its own exit
    code, stdout and stderr: what `run_cli` gives for each, less a start of Python, torch and
    Hydra per command (3-4 s on 2 CPU cores). For commands refused before training, or small."""
    cases = [[str(a) for a in case] for case in cases]
    proc = subprocess.run([sys.executable, "-c", _BATCH, json.dumps(cases)], cwd=cwd,
                          env=_command_env(env), capture_output=True, text=True, timeout=timeout,
                          check=False)
    marker = "@@DLTRAIN-BATCH@@"
    assert marker in proc.stdout, proc.stderr[-3000:]
    results = json.loads(proc.stdout.rsplit(marker, 1)[1])
    return [subprocess.CompletedProcess(["dltrain", *case], code, out, err)
            for case, (code, out, err) in zip(cases, results, strict=True)]
