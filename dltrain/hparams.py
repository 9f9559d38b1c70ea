"""A run's hyperparameters as flat `group.key: value` pairs, and which runs count as one
configuration.

Torch-free and logger-free: the run that logs its HParams record, the sweep report that groups
runs into rows, and TensorBoard's session groups all take the rule from here, so that "runs that
differ only in their seed" means the same thing everywhere.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

SEED_KEYS = ("trainer.seed",)  # keys whose values only repeat a configuration


def hparam_value(value: Any) -> bool | int | float | str:
    """HParams takes numbers, strings and booleans; anything else is shown as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def flat_hparams(cfg: DictConfig | Mapping[str, Any]) -> dict[str, Any]:
    """Every leaf of the config as `group.key: value` (lists as text), for HParams and reports.

    Keys that start with `_` (Hydra's `_target_` and the like) are not hyperparameters."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not str(key).startswith("_"):
                    walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node if isinstance(node, (bool, int, float, str)) else str(node)

    # resolved, as the run used it; a plain dict is taken as it is (already resolved)
    walk(OmegaConf.to_container(cfg, resolve=True) if OmegaConf.is_config(cfg) else cfg, "")
    return flat


def session_group(hparams: Mapping[str, Any]) -> str:
    """The HParams session group of a run: a digest of its hyperparameters without the seed,
    so that runs differing only in `trainer.seed` form one group (the report's rows, too)."""
    kept = {k: hparam_value(v) for k, v in sorted(hparams.items()) if k not in SEED_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()).hexdigest()[:16]
