"""Preflight: compose and validate the config before Hydra runs anything, so that a typo or
an out-of-range value is one sentence with exit code 2, before any training and without
importing torch."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dltrain.cli.keys import OptionKeys, check_keys
from dltrain.cli.options import groups
from dltrain.cli.sources import Sources, hydra_context, sources
from dltrain.config import dotted_keys, suggest, validate
from dltrain.errors import ConfigError

# Config options that Hydra plugins provide, and the extra of dltrain that installs each.
PLUGINS = {
    "hydra/sweeper/optuna": ("Optuna sweeper", "sweep"),
    "hydra/launcher/joblib": ("joblib launcher", "sweep"),
    "hydra/launcher/submitit_slurm": ("submitit launcher", "slurm"),
    "hydra/launcher/submitit_local": ("submitit launcher", "slurm"),
}



def _sweep_values(override) -> list[str] | None:
    """The values a sweep override stands for, as far as validation needs them: every value of
    a choice or a range, both ends of an interval (Optuna's search spaces); None for what only
    the sweeper can expand (a glob)."""
    if override.is_interval_sweep():
        interval = override.value()
        return [str(interval.start), str(interval.end)]
    try:
        return list(override.sweep_string_iterator())
    except Exception:
        return None


def _variants(overrides: list) -> list[list[str]]:
    """Override lists that together give every swept value once.

    `overrides` are parsed overrides; for one key the last one counts, as in Hydra. The first
    variant takes the first value of each sweep; each further one changes a single swept key
    to another of its values.
    """
    by_key = {o.key_or_group: o for o in overrides}
    fixed: list[str] = []
    swept: list[tuple[str, list[str]]] = []
    for override in by_key.values():
        if not override.is_sweep_override():
            fixed.append(override.input_line)
            continue
        values = _sweep_values(override)
        if values:
            swept.append((override.get_key_element(), values))
    first = [f"{key}={values[0]}" for key, values in swept]
    variants = [fixed + first]
    for i, (key, values) in enumerate(swept):
        for value in values[1:]:
            variants.append(fixed + first[:i] + [f"{key}={value}"] + first[i + 1:])
    return variants


def explain(err: Exception, overrides: list[str], root: Path | Sources,
             compose: Callable[[list[str]], object]) -> str:
    """One sentence for a composition error, naming the nearest valid name for a typo."""
    from hydra.errors import MissingConfigException

    src = root if isinstance(root, Sources) else Sources(root)

    text = str(err)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        if f"{group}/{option}" in PLUGINS:
            plugin, extra = PLUGINS[f"{group}/{option}"]
            return (f"{group}={option} needs Hydra's {plugin} plugin, which is not installed: "
                    f"pip install 'dltrain[{extra}]'.")
        options = groups(*src.dirs).get(group, [])
        if options:
            near = suggest(option, options)
            hint = f"; did you mean {group}={near}?" if near else ""
            return (f"{group}={option}: there is no such option in group {group}{hint} "
                    f"(options: {', '.join(options)}).")
        near = suggest(group, groups(*src.dirs))
        hint = f"; did you mean {near}?" if near else "."
        return f"There is no config group {group!r}{hint}"
    if "Ambiguous value for argument" in text:
        line = text.split("'")[1] if "'" in text else text
        return (f"{line} gives several values: add -m to run one job per value, or write a list "
                "as key=[a,b].")
    if "Could not append to config. An item is already at" in text:
        key = text.split("'")[1]
        return f"{key} is already a key of the config: write {key}=VALUE, without the +."
    if text.startswith("Could not override '") or "Could not append to config" in text:
        key = text.split("'")[1]
        # Candidates come from the config as the user's group choices make it.
        group_choices = [o for o in overrides
                         if o.split("=")[0].lstrip("+~") in groups(*src.dirs)]
        try:
            candidates = dotted_keys(compose(group_choices))
        except Exception:
            candidates = dotted_keys(compose([]))
        return unknown_key(key, candidates)
    return text.splitlines()[0]


def unknown_key(key: str, candidates: list[str]) -> str:
    """A sentence for an unknown dotted key: a close sibling, a close path, or the siblings."""
    parent, _, leaf = key.rpartition(".")
    siblings = [c.rpartition(".")[2] for c in candidates
                if c.rpartition(".")[0] == parent and not c.rpartition(".")[2].startswith("_")]
    if parent in candidates or not parent:  # the parent is right: look among its keys only
        near_leaf = suggest(leaf, siblings)
        near = f"{parent}.{near_leaf}" if near_leaf and parent else near_leaf
    else:
        near = suggest(key, candidates)
    if near:
        hint = f"; did you mean {near}?"
    elif parent in candidates:
        hint = f"; {parent} has: {', '.join(siblings)}."
    else:
        hint = "."
    return (f"{key} is not a key of the config{hint} "
            f"(To add a new key on purpose, write +{key}=VALUE.)")


def compose_checked(overrides: list[str], root: Path | Sources, with_hydra: bool = False):
    """The config of `overrides`, composed by the Hydra that hydra_context(root) (or
    initialize_config_dir(root)) set up (with its `hydra` node if `with_hydra`); a
    composition error is ConfigError with one sentence."""
    from hydra import compose
    from hydra.errors import HydraException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    src = root if isinstance(root, Sources) else Sources(root)

    def composed(ov: list[str], hydra: bool = False):
        return compose(src.primary, overrides=ov, return_hydra_config=hydra)

    try:
        return composed(overrides, with_hydra)
    except OverrideParseException as err:
        raise ConfigError(f"Cannot read the overrides: {str(err).splitlines()[0]}") from None
    except (HydraException, OmegaConfBaseException) as err:
        raise ConfigError(explain(err, overrides, src, composed)) from None


def checked_keys(cfg, src: Sources, keys: OptionKeys, choices=None) -> None:
    """check_keys on a composed config (its `hydra` node, if it has one, gives the group
    choices; else `choices`)."""
    from omegaconf import OmegaConf

    if "hydra" in cfg:
        choices = OmegaConf.to_container(cfg.hydra.runtime.choices)
    content = OmegaConf.to_container(cfg, resolve=False)
    assert isinstance(content, dict) and isinstance(choices, dict)
    options = groups(*src.dirs)
    check_keys(content, choices, keys, lambda group: options.get(group, []))


def _output_folder(cfg, sweep: bool) -> tuple[str, object]:
    """Hydra's output folder for this command, `(key, value)`: hydra.sweep.dir for a sweep,
    hydra.run.dir for one run, resolved as Hydra will resolve it (relative to the current
    folder); the value is None where it cannot be resolved before Hydra runs (Hydra then says
    what is wrong)."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    import dltrain.sweep  # noqa: F401  (the resolvers that name Hydra's output folders)

    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    holder = HydraConfig.instance()
    before = holder.cfg
    holder.set_config(cfg)  # for ${hydra:...} in a user's folder name
    try:
        return key, OmegaConf.select(cfg, key, throw_on_missing=True)
    except (OmegaConfBaseException, ValueError):
        return key, None
    finally:
        holder.cfg = before


def check_output(key: str, value: object, continuing: bool) -> None:
    """Before Hydra creates its output folder and writes .hydra/ there: refuse an empty one (the
    current folder), one that cannot be written, and one that holds a run that this command
    does not continue (`continuing`: trainer.resume=auto), or whose run another process
    holds. A sweep is refused whole when its folder holds a run in any job's directory:
    Hydra writes each job's .hydra/ over the old one's before the job could refuse, and which
    job lands in which directory only the sweeper knows."""
    from dltrain.lock import check_free
    from dltrain.outdir import check_new_run, check_not_empty, check_writable, run_marks

    if value is None:  # not known before Hydra runs: Hydra says what is wrong with it
        return
    check_not_empty(value, key)
    path = Path(str(value))
    if key == "hydra.run.dir":
        check_writable(path)
        check_new_run(path, continuing)
        check_free(path)
        return
    check_writable(path, "The sweep directory")
    if continuing or not path.is_dir():
        return
    taken = [p.name for p in sorted(path.iterdir()) if p.is_dir() and run_marks(p)]
    if taken:
        more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
        raise ConfigError(f"{path} already holds the runs of a sweep ({taken[0]}{more}), whose "
                          "configs a new sweep would overwrite: give it another "
                          "hydra.sweep.dir, or continue those runs with trainer.resume=auto.")


@dataclass(frozen=True)
class Mode:
    """hydra.mode of a checked command (RunMode.RUN, RunMode.MULTIRUN or None: by the
    command line), where `known`."""

    value: Any
    known: bool


def preflight(overrides: list[str], multirun: bool, root: Path | Sources | None = None,
              output: bool = True) -> Mode:
    """Compose the config for every value the overrides take, and validate each one; the
    config's `hydra.mode` (Mode: what Hydra would compose the config once more to learn).

    A sweep can come from the command line (`-m a=1,2`) or from the config itself
    (`hparams_search=optuna` sets hydra.mode=MULTIRUN and a search space in
    hydra.sweeper.params); both are checked, intervals at their ends. Raises ConfigError with
    one sentence for the first problem found. `root` is the config tree (Sources: conf/ and
    a -cd folder; a Path: that folder alone), conf/ by default. Every config's keys are
    checked too (keys.check_keys): a key that nothing reads is refused. With `output`, Hydra's
    output folder is checked last (check_output); dltrain.train checks its own.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException
    from hydra.types import RunMode
    from omegaconf import OmegaConf, open_dict
    from omegaconf.errors import OmegaConfBaseException

    from dltrain.overrides import kind, with_values
    from dltrain.pinn.rules import data_overrides, lbfgs_overrides

    src = root if isinstance(root, Sources) else sources() if root is None else Sources(root)
    parser = OverridesParser.create()

    def parse(lines: list[str]) -> list:
        try:
            return parser.parse_overrides(lines)
        except OverrideParseException as err:
            raise ConfigError(f"Cannot read the overrides: {str(err).splitlines()[0]}") \
                from None

    parsed = parse(overrides)
    with hydra_context(src):
        keys = OptionKeys(src)

        def checked(ov: list[str], with_hydra: bool = False):
            config = compose_checked(ov, src, True)
            checked_keys(config, src, keys)
            unused = data_overrides(config.get("task"), ov) or lbfgs_overrides(
                config.get("optim"), ov)
            if unused:
                raise ConfigError(unused + ".")
            if not with_hydra:
                with open_dict(config):  # what compose() returns without return_hydra_config
                    del config["hydra"]
            return config

        fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
        base = checked(fixed, True)
        mode = base.hydra.mode
        choices = OmegaConf.to_container(base.hydra.runtime.choices)
        sweeper = base.hydra.sweeper
        sweep = multirun or base.hydra.mode == RunMode.MULTIRUN
        folder = _output_folder(base, sweep)
        continuing = OmegaConf.select(base, "trainer.resume") == "auto"
        if sweep:
            direction = sweeper.get("direction")
            if direction is not None and not isinstance(direction, str):
                raise ConfigError("hydra.sweeper.direction must be maximize or minimize: dltrain "
                                  "hands the sweeper one objective per run.")
            params = sweeper.get("params") or {}
            space = parse([f"{key}={value}" for key, value in params.items()])
            variants = _variants(space + parsed)
        else:
            variants = [overrides]
        # The first variant is composed, unless it is `base` (a single run: one composition,
        # not two); one that differs from it only in values is that config with its values
        # (a sweep of 8 seeds x 8 rates: 1 composition, not 16).
        groups = set(base.hydra.runtime.choices)
        first = parsed if variants[0] == overrides else parse(variants[0])
        if variants[0] == fixed:
            with open_dict(base):  # what compose() returns without return_hydra_config
                del base["hydra"]
            first_config = base
        else:
            first_config = checked(variants[0], True)
            choices = OmegaConf.to_container(first_config.hydra.runtime.choices)
            with open_dict(first_config):
                del first_config["hydra"]
        first_kind = kind(first, groups)
        validate(first_config)
        for variant in variants[1:]:
            parsed_variant = parse(variant)
            config = None
            if first_kind is not None and kind(parsed_variant, groups) == first_kind:
                try:
                    config = with_values(first_config, parsed_variant, groups)
                except OmegaConfBaseException:  # Hydra's composition says it in its words
                    config = None
                if config is not None:  # the same group choices as the first variant's
                    checked_keys(config, src, keys, choices)
            validate(config if config is not None else checked(variant))
    if output and os.environ.get("RANK", "0") == "0":  # torchrun's rank 0 owns the directory
        check_output(*folder, continuing)
    # the base config's mode is the command's unless a sweep's value sets hydra.mode itself
    swept_mode = any(o.key_or_group == "hydra.mode" for o in parsed if o.is_sweep_override())
    return Mode(None if swept_mode else mode, known=not swept_mode)
