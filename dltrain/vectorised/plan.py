"""Which jobs of a sweep train together as one stacked model, and why the others run alone.

Jobs stack when their configs are equal but for values a stack can hold per member
(`STACKABLE`: the seed, optimiser and regularisation strengths, the init scale; for generated
data also the noise and the draw, `DATA_STACKABLE`) and when nothing in the shared config
needs a training loop of its own (`alone_reason`). Each key declares which it is in its rule
(config.RULES: `stack`, `alone`), each model class whether a stack computes it exactly
(`stackable`, or `unstackable` saying why not) and each stacked optimiser which of torch's
classes and keys it implements (vectorised/optim.STACKED_OPTIMISERS); this module lists no key,
model or optimiser.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dltrain.choices import PROBE_COMMON, PROBES, looks_into_training
from dltrain.config import RULES, find, lookup, own_code, validate, written
from dltrain.errors import ConfigError
from dltrain.pinn.rules import LBFGS_TARGETS
from dltrain.rules import PER_DRAW, PER_MEMBER, off
from dltrain.vectorised.optim import STACKED_OPTIMISERS

# What each key allows is declared by its rule (config.RULES: `stack` and `alone`); the
# order in which varying keys are named: seed, optimiser, initialisation, model, penalties, data.
_ORDER = ("trainer", "optim", "init", "model", "penalty", "data")


def _ordered(keys: list[str]) -> tuple[str, ...]:
    return tuple(sorted(keys, key=lambda k: _ORDER.index(k.split(".")[0])
                        if k.split(".")[0] in _ORDER else len(_ORDER)))


# Values each member of a stack may have of its own (a generated data set's draw too).
STACKABLE = _ordered([r.key for r in RULES if r.stack == PER_MEMBER])
DATA_STACKABLE = _ordered([r.key for r in RULES if r.stack == PER_DRAW])
# Trainer keys whose rules say how a stack runs them; any other must be off to stack.
TRAINER_KEYS = {r.key for r in RULES if r.key.startswith("trainer.") and r.stack is not None}
_ALONE = [r for r in RULES if r.alone is not None]


def model_reason(model: dict[str, Any]) -> str | None:
    """Why a model cannot be stacked, or None: its class says (`stackable = True` where a
    stack computes its forward exactly; `unstackable`, a phrase saying why not)."""
    target = str(model.get("_target_"))
    module, _, name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        cls = None
    if getattr(cls, "stackable", False):
        return None
    why = getattr(cls, "unstackable", f"{target} does not declare itself stackable")
    return f"model={model.get('name')}: not stacked ({why})"


@dataclass(frozen=True)
class Plan:
    """The jobs of a sweep (by their index in the sweep's list): stacks and lone jobs."""

    stacks: list[list[int]] = field(default_factory=list)  # each trains as one model
    alone: dict[int, str] = field(default_factory=dict)  # job -> why it runs on its own


def _drop(container: dict[str, Any], key: str) -> None:
    *path, leaf = key.split(".")
    node: Any = container
    for part in path:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(leaf, None)


def stack_key(cfg: DictConfig, generated: Collection[str]) -> str:
    """What must be equal for two jobs to stack: the resolved config without the values a
    member may have of its own (`generated`: the data sets that are drawn, not read)."""
    container = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(container, dict)
    container.pop("hydra", None)
    keys = STACKABLE + (DATA_STACKABLE if lookup(container, "data.name") in generated else ())
    for key in keys:
        _drop(container, key)
    return json.dumps(container, sort_keys=True, default=str)


def _leaves(node: Any, prefix: str) -> list[str]:
    """The dotted keys of the leaves of a plain config node (grad_clip.max_norm, ...)."""
    if not isinstance(node, dict) or not node:
        return [prefix[:-1]]
    return [leaf for k, v in node.items() for leaf in _leaves(v, f"{prefix}{k}.")]


def looking_probes(probe: dict[str, Any]) -> list[str]:
    """The probes of a config's `probe` node that look during training. A stack calls its
    members' probes once, at each member's end: only probes that look at the trained model
    alone can stack (choices.PROBES says which, with which options)."""
    names = set(probe) - set(PROBE_COMMON)
    return sorted(n for n in names if looks_into_training(n, probe[n] or {}))


def _at_end_probes() -> str:
    """probe=[fit] with probe.fit.images=false, ...: the probes a stack can run, as options."""
    return ", ".join(
        " with ".join([f"probe=[{name}]", *(f"probe.{name}.{k}={written(v)}"
                                             for k, v in at_end.items())])
        for name, at_end in PROBES.items() if at_end is not None)


def alone_reason(cfg: DictConfig, device_type: str = "cpu") -> str | None:
    """Why this job cannot train in a stack (one sentence), or None if it can.

    `device_type` is where it would train (`trainer.device` resolved: cpu, cuda, mps).
    """
    c = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(c, dict)
    optim, model, trainer = c["optim"], c["model"], c["trainer"]
    target = str(optim.get("_target_"))
    if target in LBFGS_TARGETS:
        return (f"optim={optim.get('name')}: L-BFGS runs a line search of its own length in "
                "every step, which members cannot share (optim=adam stacks)")
    if target not in STACKED_OPTIMISERS:
        known = ", ".join(t.rpartition(".")[2] for t in STACKED_OPTIMISERS)
        return f"optim={optim.get('name')}: only {known} steps are vectorised"
    extra = sorted(set(optim) - STACKED_OPTIMISERS[target] - {"name", "_target_"})
    if extra:
        return f"optim.{extra[0]} is not implemented by the vectorised optimiser"
    for flag in ("amsgrad", "maximize"):
        if optim.get(flag):
            return f"optim.{flag}=true is not implemented by the vectorised optimiser"
    why = model_reason(model)
    if why is not None:
        return why
    if own_code(c["loss"]):
        return (f"loss._target_={c['loss']['_target_']}: your own loss is not stacked (a "
                "stack maps dltrain's losses over its members)")
    if not off(model.get("dropout")) and device_type != "cpu":
        return (f"model.dropout on {device_type}: dropout masks there come from a fused "
                "kernel whose random stream a member cannot reproduce (on cpu it can)")
    for key in sorted(set(_leaves(trainer, "trainer.")) - TRAINER_KEYS):
        if not off(lookup(c, key)):
            return f"{key} is not implemented by the vectorised training loop"
    for rule in _ALONE:
        found, value = find(c, rule.key)
        why = rule.alone(value) if found else None  # type: ignore[misc]
        if why is not None:
            return why
    if looking_probes(c["probe"]):
        return ("probes look into one model's training loop: it runs alone (of them only "
                f"{_at_end_probes()}, which looks at the end, stacks)")
    return None


def plan(cfgs: Sequence[DictConfig], generated: Collection[str],
         device_types: Sequence[str] | None = None, max_members: int = 128) -> Plan:
    """Group the jobs `cfgs` into stacks of at most `max_members`; say why the rest run alone.

    `device_types[i]` is where job i would train (cpu by default). Groups keep the order of
    the jobs; a group of one runs alone. A job whose config breaks a rule runs alone, where
    its run refuses it in one sentence: one bad value of a sweep fails its own job, and the
    others still stack.
    """
    result = Plan()
    groups: dict[str, list[int]] = {}
    for i, cfg in enumerate(cfgs):
        try:
            validate(cfg)
        except ConfigError as err:
            result.alone[i] = f"its config is refused ({err})"
            continue
        why = alone_reason(cfg, device_types[i] if device_types else "cpu")
        if why is not None:
            result.alone[i] = why
        else:
            groups.setdefault(stack_key(cfg, generated), []).append(i)
    for members in groups.values():
        for start in range(0, len(members), max_members):
            chunk = members[start:start + max_members]
            if len(chunk) > 1:
                result.stacks.append(chunk)
            elif len(members) == 1:
                result.alone[chunk[0]] = ("nothing to stack with: no other job of the sweep "
                                          "differs from it only in stackable values")
            else:
                result.alone[chunk[0]] = (f"left over after stacks of max_members="
                                          f"{max_members}")
    return result


def varying(cfgs: Sequence[DictConfig]) -> list[str]:
    """The stackable keys whose values differ between `cfgs` (the members of a stack)."""
    containers = [OmegaConf.to_container(c, resolve=True) for c in cfgs]
    return [key for key in STACKABLE + DATA_STACKABLE
            if len({json.dumps(lookup(c, key), default=str) for c in containers}) > 1]


def job_numbers(jobs: Sequence[int]) -> str:
    """#0-#63, or #2, #5, #7: the jobs of a sweep by their numbers, briefly."""
    if not jobs:
        return ""
    if list(jobs) == list(range(jobs[0], jobs[0] + len(jobs))) and len(jobs) > 2:
        return f"#{jobs[0]}-#{jobs[-1]}"
    shown = ", ".join(f"#{j}" for j in jobs[:8])
    return shown + (f" and {len(jobs) - 8} more" if len(jobs) > 8 else "")
