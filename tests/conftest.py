"""Shared fixtures: composing configs exactly as the command line does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from dltrain.cli import CONFIG_NAME, conf_dir

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def make_cfg() -> Callable[..., DictConfig]:
    """Compose `conf/train.yaml` with overrides, as `dltrain OVERRIDES` would."""

    def _compose(*overrides: str) -> DictConfig:
        with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
            return compose(CONFIG_NAME, overrides=list(overrides))

    return _compose


def run_cli(*args: str, cwd: Path, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """The real `dltrain` console script in a subprocess (`python -m dltrain` if not installed)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    script = Path(sys.executable).parent / "dltrain"
    command = [str(script)] if script.exists() else [sys.executable, "-m", "dltrain"]
    return subprocess.run([*command, *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout, check=False)
