"""No setting is ever silently ignored: every key of a group's node must be one that its option
reads.

An option's own file (conf/<group>/<option>.yaml, or a `-cd DIR`'s) lists the keys it uses, so
a key of the composed node that the file lacks was added (`+data.path=x.csv` on data=glyphs)
and nothing would read it: refused, before anything runs, in one sentence. New options need
no list here: their files are read. `name` labels the chosen option and must stay its name.

A node that is handed to a class (its option has a `_target_`: an optimiser, a model, a
named loss; or the user replaced the `_target_` with their own class) is not checked here:
the class is given every key and refuses, when built, one that it does not take
(targets.call_target), while preflight imports no torch.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from omegaconf import OmegaConf

from dltrain.cli.sources import Sources
from dltrain.config import own_code, suggest
from dltrain.errors import ConfigError

Keys = dict[str, Any]  # an option's keys as a nested dict (values as its file writes them)


class OptionKeys:
    """The keys of each `group=option`, read once from the files that Hydra composes (the
    option's own defaults list within its group followed), through Hydra's repository."""

    def __init__(self, src: Sources) -> None:
        from hydra.core.global_hydra import GlobalHydra

        hydra = GlobalHydra.instance().hydra
        assert hydra is not None, "OptionKeys needs an initialised Hydra (hydra_context)"
        self.repo = hydra.config_loader.repository
        self.src = src
        self.cache: dict[tuple[str, str], Keys | None] = {}

    def __call__(self, group: str, option: str) -> Keys | None:
        """The keys of `group=option`, or None where the option is not a node of `group`
        (a preset of `@package _global_`, say, that sets keys elsewhere)."""
        if (group, option) not in self.cache:
            self.cache[group, option] = self._load(group, option)
        return self.cache[group, option]

    def _load(self, group: str, option: str) -> Keys | None:
        from hydra.core.default_element import ConfigDefault

        result = self.repo.load_config(f"{group}/{option}")
        if result is None:
            return None
        content = OmegaConf.to_container(result.config, resolve=False)
        assert isinstance(content, dict)
        package = result.header.get("package")
        if package == "_global_":
            node = content.get(group)
        elif package in (None, "", "_group_", group):
            node = content
        else:
            return None
        if not isinstance(node, dict):
            return None
        keys: Keys = {}
        for entry in result.defaults_list or []:  # e.g. trainer/smoke: [default, _self_]
            if isinstance(entry, ConfigDefault) and entry.path not in (None, "_self_"):
                inner = self(group, str(entry.path).lstrip("/").removeprefix(f"{group}/"))
                keys = _merged(keys, inner or {})
        return _merged(keys, node)

    def named(self, group: str) -> bool:
        """Whether dltrain's own options of `group` carry a `name` (model, data, ...; not
        trainer)."""
        from dltrain.cli.options import groups

        own = groups(self.src.root).get(group, [])
        return bool(own) and "name" in (self(group, own[0]) or {})

    def having(self, group: str, key: str) -> list[str]:
        """The options of `group` that have `key` (a key of the node, not dotted)."""
        from dltrain.cli.options import groups

        return [o for o in groups(*self.src.dirs).get(group, [])
                if key in (self(group, o) or {})]


def _merged(base: Keys, more: Keys) -> Keys:
    out = dict(base)
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merged(out[key], value)
        else:
            out[key] = value
    return out


def _extra(node: Mapping[str, Any], allowed: Keys, prefix: str) -> str | None:
    """The first dotted key of `node` that `allowed` does not have. A key whose value in
    `allowed` is not a mapping (`augment: null`) is a slot that a preset may fill."""
    for key, value in node.items():
        if key not in allowed:
            return f"{prefix}.{key}"
        if isinstance(value, Mapping) and isinstance(allowed[key], dict):
            found = _extra(value, allowed[key], f"{prefix}.{key}")
            if found:
                return found
    return None


def _listed(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def unread_key(key: str, group: str, option: str, allowed: Keys, keys: OptionKeys) -> str:
    """The sentence for `key`, set in `group=option` but read by nothing."""
    parent, _, leaf = key.rpartition(".")
    node: Any = allowed
    for part in parent.split(".")[1:]:
        node = node[part]
    siblings = [k for k in node if not k.startswith("_")]
    if key == f"{group}._target_":
        built = keys.having(group, "_target_")
        # the example: an option with the fewest keys of its own to hand to the user's class
        eg = sorted(built, key=lambda o: (len(keys(group, o) or {}), [-ord(c) for c in o]))
        start = f"; start from one that is, e.g. {group}={eg[0]} {key}=..." if eg else ""
        return (f"{group}={option} is not built from a _target_, so {key} would be ignored"
                f"{start} (options with a _target_: {', '.join(built) or 'none'}).")
    near = suggest(leaf, siblings)
    hint = f"; did you mean {parent}.{near}?" if near else "."
    others = [o for o in keys.having(group, leaf) if o != option] if parent == group else []
    where = f"; {group}={_listed(others)} {'has' if len(others) == 1 else 'have'} it" \
        if others else ""
    owner = f"{group}={option}" if parent == group else parent
    return (f"{key} is not a key of {group}={option}, so nothing would read it{where} "
            f"({owner} has: {', '.join(siblings)}){hint}")


def check_keys(cfg: Mapping[str, Any], choices: Mapping[str, Any], keys: OptionKeys,
               options: Callable[[str], list[str]]) -> None:
    """Refuse (ConfigError, one sentence) a key of a group's node that its option does not
    read, and a `name` that is not the chosen option's. `choices` are Hydra's
    (hydra.runtime.choices); `options(group)` lists a group's options."""
    for group, option in choices.items():
        if "/" in group or not isinstance(option, str) or option.startswith("["):
            continue  # Hydra's own groups, lists of presets (reg, probe), nothing chosen
        node = cfg.get(group)
        allowed = keys(group, option)
        if not isinstance(node, Mapping) or allowed is None:
            continue
        if "name" not in allowed and keys.named(group):
            path = keys.src.option_file(group, option) or f"{group}/{option}.yaml"
            raise ConfigError(f"{path} needs a line `name: {option}`: dltrain labels the "
                              f"run's {group} by it.")
        if "name" in allowed and node.get("name") != allowed["name"]:
            raise ConfigError(_renamed(group, option, node.get("name"), options(group)))
        if allowed.get("_target_") is not None or (own_code(node) and "_target_" in allowed):
            # The node goes to a class (torch's, dltrain's, the user's), which is given every
            # key and refuses, when built, one that it does not take (+optim.amsgrad=true is
            # read by Adam; +model.foo=1 is refused by the MLP).
            continue
        extra = _extra(node, allowed, group)
        if extra is not None:
            raise ConfigError(unread_key(extra, group, option, allowed, keys))


def _renamed(group: str, option: str, name: Any, names: list[str]) -> str:
    near = suggest(str(name), names)
    hint = f"; did you mean {group}={near}?" if near else f" (options: {', '.join(names)})."
    return (f"{group}.name={name}: the name labels the chosen option ({group}={option}) and "
            f"chooses nothing; to choose another, write {group}=NAME{hint}")
