"""Configs that differ from a composed one only in values: made without composing again.

Hydra composes a config from its defaults list (config groups, files) and then applies the
overrides that set values (`optim.lr=0.01`), by OmegaConf.update. A sweep's configs mostly
differ from each other only in such values, and each composition reads and merges the config
files again (~70 ms). Given one composed config, another that chooses the same groups and
sets the same keys is that config with the other values applied the same way
(`with_values`), in a small fraction of the time: the command line's preflight and the
vectorised launcher use it. Torch-free, like everything that runs before training.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, read_write


def value_overrides(parsed: Sequence[Any], groups: Collection[str]) -> list[Any]:
    """The overrides among `parsed` (Hydra's Override objects) that set one value of a key,
    not a config group (`groups`: the groups of the config), a sweep or Hydra's own node."""
    from hydra.core.override_parser.types import OverrideType

    return [o for o in parsed if o.type == OverrideType.CHANGE and not o.is_sweep_override()
            and not o.is_hydra_override() and o.key_or_group not in groups
            and "/" not in o.key_or_group and not _list_choice(o)]


def _list_choice(override: Any) -> bool:
    """`reg=[l2]`, `probe=[fit]`, `logger=[tensorboard,mlflow]`: options of a group whose
    default is a list, which hydra.runtime.choices does not name (no top-level key of the
    config holds a list of its own)."""
    return "." not in override.key_or_group and isinstance(override.value(), list)


def kind(parsed: Sequence[Any], groups: Collection[str]) -> tuple[str, ...] | None:
    """What override lists of one kind, which compose alike but for values, share: the
    overrides that are not values (groups, additions, deletions, Hydra's) in their order,
    and the keys of the values. None where a key is set twice: then the order in which
    Hydra applies them matters, and the config is best composed."""
    values = value_overrides(parsed, groups)
    keys = [o.key_or_group for o in values]
    if len(set(keys)) != len(keys):
        return None
    return (*(o.input_line or "" for o in parsed if o not in values), "|", *keys)


def with_values(base: DictConfig, parsed: Sequence[Any], groups: Collection[str]) -> DictConfig:
    """A copy of `base` (composed from overrides of the same kind as `parsed`) with the
    values `parsed` sets, applied as Hydra applies them after composing."""
    config = copy.deepcopy(base)
    with read_write(config):  # in struct mode still: only keys `base` has
        for o in value_overrides(parsed, groups):
            OmegaConf.update(config, o.key_or_group, o.value(), merge=True)
    return config
