"""The `dltrain` command: verbs, the Hydra entry point, error messages and exit codes.

Verbs (`list`, ...) are dispatched before Hydra sees the arguments; everything else is a Hydra
app. Before Hydra runs anything, `preflight` composes the config for every value the
overrides take and validates it, so a typo or an out-of-range value is answered in one
sentence with exit code 2 — before any training, and without importing torch.

This is the only module that imports Hydra's application machinery.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import OmegaConf

from dltrain.config import dotted_keys, suggest, validate
from dltrain.errors import ConfigError

CONFIG_NAME = "train"
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
REPORT_USAGE = ("Usage: dltrain report SWEEP_DIR (e.g. outputs/sweeps/<date>_<time>_<tag>): "
                "the table, report.csv, report.md and plots of a sweep.")
# Config options that Hydra plugins provide, and the extra of dltrain that installs each.
PLUGINS = {
    "hydra/sweeper/optuna": ("Optuna sweeper", "sweep"),
    "hydra/launcher/joblib": ("joblib launcher", "sweep"),
    "hydra/launcher/submitit_slurm": ("submitit launcher", "slurm"),
    "hydra/launcher/submitit_local": ("submitit launcher", "slurm"),
}


def conf_dir() -> Path:
    """The config tree: inside the installed package, else at the top of a source checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"dltrain's config tree (conf/{CONFIG_NAME}.yaml) is missing")


# ---------------------------------------------------------------------------------------------
# dltrain list


def _description(path: Path) -> str:
    """The first comment line of a config file that is not a Hydra directive."""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if text.startswith("#") and not text.startswith("# @"):
            return text.lstrip("# ").strip()
        if text and not text.startswith("#"):
            break
    return ""


def groups(root: Path) -> dict[str, list[str]]:
    """Config groups (folders of conf/, Hydra's own excluded) and their options."""
    return {
        d.name: sorted(p.stem for p in d.glob("*.yaml"))
        for d in sorted(root.iterdir())
        if d.is_dir() and d.name != "hydra" and any(d.glob("*.yaml"))
    }


def defaults(root: Path) -> dict[str, list[str]]:
    """The options the primary config selects for each group."""
    chosen: dict[str, list[str]] = {}
    for entry in OmegaConf.load(root / f"{CONFIG_NAME}.yaml").get("defaults", []):
        if isinstance(entry, str) or not hasattr(entry, "items"):
            continue
        for group, option in entry.items():
            if option is not None and not str(group).startswith("override"):
                chosen[str(group)] = [str(o) for o in option] if OmegaConf.is_list(option) \
                    else [str(option)]
    return chosen


def list_options(args: Sequence[str]) -> int:
    """`dltrain list [GROUP]`: every option of every group (or of one), one line each."""
    root = conf_dir()
    options = groups(root)
    if args:
        if args[0] not in options:
            near = suggest(args[0], options)
            hint = f"; did you mean {near}?" if near else f" (groups: {', '.join(options)})."
            raise ConfigError(f"There is no config group {args[0]!r}{hint}")
        options = {args[0]: options[args[0]]}
    chosen = defaults(root)
    width = max(len(o) for opts in options.values() for o in opts) + 2
    for group, names in options.items():
        picked = chosen.get(group, [])
        default = ", ".join(picked) if picked else "none"
        print(f"{group}  (default: {default})")
        for name in names:
            mark = "*" if name in picked else " "
            print(f"  {mark} {name:<{width}}{_description(root / group / f'{name}.yaml')}")
    return 0


# ---------------------------------------------------------------------------------------------
# Preflight: compose and validate before Hydra runs anything


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


def _explain(err: Exception, overrides: list[str], root: Path,
             compose: Callable[[list[str]], object]) -> str:
    """One sentence for a composition error, naming the nearest valid name for a typo."""
    from hydra.errors import MissingConfigException

    text = str(err)
    if isinstance(err, MissingConfigException) and err.missing_cfg_file:
        group, _, option = str(err.missing_cfg_file).rpartition("/")
        if f"{group}/{option}" in PLUGINS:
            plugin, extra = PLUGINS[f"{group}/{option}"]
            return (f"{group}={option} needs Hydra's {plugin} plugin, which is not installed: "
                    f"pip install 'dltrain[{extra}]'.")
        options = groups(root).get(group, [])
        if options:
            near = suggest(option, options)
            hint = f"; did you mean {group}={near}?" if near else ""
            return (f"{group}={option}: there is no such option in group {group}{hint} "
                    f"(options: {', '.join(options)}).")
        near = suggest(group, groups(root))
        hint = f"; did you mean {near}?" if near else "."
        return f"There is no config group {group!r}{hint}"
    if "Ambiguous value for argument" in text:
        line = text.split("'")[1] if "'" in text else text
        return (f"{line} gives several values: add -m to run one job per value, or write a list "
                "as key=[a,b].")
    if text.startswith("Could not override '") or "Could not append to config" in text:
        key = text.split("'")[1]
        # Candidates come from the config as the user's group choices make it.
        group_choices = [o for o in overrides if (root / o.split("=")[0].lstrip("+~")).is_dir()]
        try:
            candidates = dotted_keys(compose(group_choices))
        except Exception:
            candidates = dotted_keys(compose([]))
        return _unknown_key(key, candidates)
    return text.splitlines()[0]


def _unknown_key(key: str, candidates: list[str]) -> str:
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


def preflight(overrides: list[str], multirun: bool, root: Path | None = None) -> None:
    """Compose the config for every value the overrides take, and validate each one.

    A sweep can come from the command line (`-m a=1,2`) or from the config itself
    (`hparams_search=optuna` sets hydra.mode=MULTIRUN and a search space in
    hydra.sweeper.params); both are checked, intervals at their ends. Raises ConfigError with
    one sentence for the first problem found.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException, OverrideParseException
    from hydra.types import RunMode
    from omegaconf.errors import OmegaConfBaseException

    root = root or conf_dir()
    parser = OverridesParser.create()

    def parse(lines: list[str]) -> list:
        try:
            return parser.parse_overrides(lines)
        except OverrideParseException as err:
            raise ConfigError(f"Cannot read the overrides: {str(err).splitlines()[0]}") \
                from None

    parsed = parse(overrides)
    with initialize_config_dir(str(root), version_base="1.3", job_name=CONFIG_NAME):

        def composed(ov: list[str], with_hydra: bool = False):
            return compose(CONFIG_NAME, overrides=ov, return_hydra_config=with_hydra)

        def checked(ov: list[str], with_hydra: bool = False):
            try:
                return composed(ov, with_hydra)
            except OverrideParseException as err:
                raise ConfigError(f"Cannot read the overrides: {str(err).splitlines()[0]}") \
                    from None
            except (HydraException, OmegaConfBaseException) as err:
                raise ConfigError(_explain(err, ov, root, composed)) from None

        base = checked([o.input_line for o in parsed if not o.is_sweep_override()], True)
        sweeper = base.hydra.sweeper
        if multirun or base.hydra.mode == RunMode.MULTIRUN:
            direction = sweeper.get("direction")
            if direction is not None and not isinstance(direction, str):
                raise ConfigError("hydra.sweeper.direction must be maximize or minimize: dltrain "
                                  "hands the sweeper one objective per run.")
            params = sweeper.get("params") or {}
            space = parse([f"{key}={value}" for key, value in params.items()])
            variants = _variants(space + parsed)
        else:
            variants = [overrides]
        for variant in variants:
            validate(checked(variant))


# ---------------------------------------------------------------------------------------------
# Training through Hydra


def _train(argv: list[str]) -> int:
    """Hand the arguments to the Hydra app after a preflight; return the worst exit code."""
    import hydra
    from hydra._internal.utils import get_args_parser

    from dltrain.sweep import sweeper_value  # also registers the resolvers conf/ names dirs with

    args = get_args_parser().parse_args(argv)
    just_asking = args.help or args.hydra_help or args.info or args.shell_completion
    if not just_asking:
        preflight(list(args.overrides), bool(args.multirun))

    codes: list[int] = []

    @hydra.main(config_path=str(conf_dir()), config_name=CONFIG_NAME, version_base="1.3")
    def job(cfg) -> float | None:
        from hydra.core.hydra_config import HydraConfig

        from dltrain.run import run  # torch is imported here, after the config is known good

        hydra_cfg = HydraConfig.get()
        result = run(cfg, hydra_cfg.runtime.output_dir)
        codes.append(result.exit_code)
        if result.exit_code == EXIT_BAD_INPUT:
            print(f"dltrain: {result.summary.get('error')}", file=sys.stderr)
        if result.status == "interrupted":  # a stopped sweep stops, it does not go on
            raise SystemExit(EXIT_INTERRUPTED)
        return sweeper_value(result.summary, hydra_cfg.sweeper.get("direction"))

    saved = sys.argv
    sys.argv = ["dltrain", *argv]
    try:
        job()
    except SystemExit as stop:  # Hydra's own exits, and a sweep's report naming failures
        codes.append(0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1)
    finally:
        sys.argv = saved
    return max(codes, default=0)


def report(args: Sequence[str]) -> int:
    """`dltrain report SWEEP_DIR`: the sweep's table again, and its report files rewritten."""
    if list(args[:1]) in (["-h"], ["--help"]):
        print(REPORT_USAGE)
        return 0
    if len(args) != 1:
        raise ConfigError(f"dltrain report takes one sweep directory. {REPORT_USAGE}")
    from dltrain.report import write_report  # lazy: no torch, but rich tables and yaml

    write_report(Path(args[0]))
    return 0


VERBS: dict[str, Callable[[list[str]], int]] = {
    "list": list_options,
    "report": report,
}


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `dltrain` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in VERBS:
            code = VERBS[argv[0]](argv[1:])
        else:
            code = _train(argv)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"dltrain: {err}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    sys.exit(code)
