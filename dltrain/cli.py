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

    from dltrain.overrides import kind, with_values

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
        # The first variant is composed; one that differs from it only in values is that
        # config with its values (a sweep of 8 seeds x 8 rates: 1 composition, not 16).
        groups = set(base.hydra.runtime.choices)
        first = parse(variants[0])
        first_kind, first_config = kind(first, groups), checked(variants[0])
        validate(first_config)
        for variant in variants[1:]:
            parsed_variant = parse(variant)
            config = None
            if first_kind is not None and kind(parsed_variant, groups) == first_kind:
                try:
                    config = with_values(first_config, parsed_variant, groups)
                except OmegaConfBaseException:  # Hydra's composition says it in its words
                    config = None
            validate(config if config is not None else checked(variant))


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
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # one of torchrun's processes
            if args.multirun:
                raise ConfigError("torchrun starts one data-parallel run, not a sweep; drop -m "
                                  "(sweep data-parallel runs with a cluster launcher instead).")
            if int(os.environ.get("RANK", "0")) != 0:
                return _worker(list(args.overrides))

    outcomes: list[tuple[str, int, str]] = []  # (run dir, exit code, status and error)
    codes: list[int] = []  # exits of Hydra itself and of the sweep's report

    def finish(run_dir: str, result) -> float | None:
        """Account for a run that ended (`result`: a dltrain.run.RunResult): its exit code,
        its error on stderr if it was refused, the value handed to the sweeper. Called
        inside Hydra's job (HydraConfig holds the job's config)."""
        from hydra.core.hydra_config import HydraConfig

        error = result.summary.get("error", "")
        outcomes.append((run_dir, result.exit_code, f"{result.status}: {error}"))
        if result.exit_code == EXIT_BAD_INPUT:
            print(f"dltrain: {error}", file=sys.stderr)
        if result.status == "interrupted":  # a stopped sweep stops, it does not go on
            raise SystemExit(EXIT_INTERRUPTED)
        return sweeper_value(result.summary, HydraConfig.get().sweeper.get("direction"))

    def job(cfg) -> float | None:
        from hydra.core.hydra_config import HydraConfig

        from dltrain.run import run  # torch is imported here, after the config is known good

        run_dir = HydraConfig.get().runtime.output_dir
        return finish(run_dir, run(cfg, run_dir))

    # The vectorised launcher (hydra_plugins/dltrain_vectorised) trains the members of a
    # stack itself and hands each one's result to `finish`, as `job` hands its own.
    job.finish = finish  # type: ignore[attr-defined]
    app = hydra.main(config_path=str(conf_dir()), config_name=CONFIG_NAME,
                     version_base="1.3")(job)

    saved = sys.argv
    sys.argv = ["dltrain", *argv]
    try:
        app()
    except SystemExit as stop:  # Hydra's own exits, and a sweep's report naming failures
        codes.append(0 if stop.code is None else stop.code if isinstance(stop.code, int) else 1)
    finally:
        sys.argv = saved
    failures = [(d, why) for d, code, why in outcomes if code != 0]
    if len(outcomes) > 1 and failures:
        print(f"dltrain: {len(failures)} of {len(outcomes)} runs did not complete:",
              file=sys.stderr)
        for run_dir, why in failures:
            print(f"  {run_dir}  {why}", file=sys.stderr)
    return max([*codes, *(code for _, code, _ in outcomes)], default=0)


def _worker(overrides: list[str]) -> int:
    """A data-parallel rank other than 0: the same config, composed without Hydra's run
    directory or logging (rank 0 owns the one directory of the job and tells the others)."""
    from hydra import compose, initialize_config_dir

    from dltrain.run import run

    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name=CONFIG_NAME):
        cfg = compose(CONFIG_NAME, overrides=overrides)
    return run(cfg, None).exit_code


# ---------------------------------------------------------------------------------------------
# dltrain resume / dltrain eval: a run directory and KEY=VALUE overrides of its own config


def load_run_config(run_dir: Path, overrides: Sequence[str]):
    """The run's own resolved config with `overrides` applied; unknown keys are refused."""
    path = run_dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a dltrain run directory (it has no "
                          ".hydra/config.yaml).")
    cfg = OmegaConf.load(path)
    OmegaConf.set_struct(cfg, True)
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or key.startswith(("+", "~")):
            raise ConfigError(f"{override!r}: a run directory takes KEY=VALUE overrides of its "
                              "own config, e.g. trainer.max_epochs=20.")
        if "." not in key:
            raise ConfigError(f"{override!r} would change the run's {key}; a new {key} option "
                              "is a new run, so start one with dltrain instead.")
        try:
            cfg.merge_with_dotlist([override])
        except Exception:  # OmegaConf's struct error for a key the run does not have
            raise ConfigError(_unknown_key(key, dotted_keys(cfg))) from None
    return cfg


def _log_to(run_dir: Path) -> None:
    """Log as a Hydra run does: to the terminal and appended to RUN_DIR/train.log."""
    import logging

    from dltrain.log.console import ConsoleHandler

    root = logging.getLogger()
    root.setLevel(logging.INFO)
    console = ConsoleHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    file = logging.FileHandler(run_dir / "train.log", mode="a", encoding="utf-8")
    file.setFormatter(logging.Formatter("[%(asctime)s] %(message)s", datefmt="%H:%M:%S"))
    root.handlers = [console, file]


def _run_dir(args: Sequence[str], verb: str) -> Path:
    if not args or args[0].startswith("-"):
        raise ConfigError(f"dltrain {verb} needs a run directory: dltrain {verb} RUN_DIR "
                          "[KEY=VALUE ...].")
    run_dir = Path(args[0])
    if not run_dir.is_dir():
        raise ConfigError(f"There is no run directory {run_dir}.")
    return run_dir


def resume(args: list[str]) -> int:
    """`dltrain resume RUN_DIR [KEY=VALUE ...]`: continue a run in place."""
    run_dir = _run_dir(args, "resume")
    cfg = load_run_config(run_dir, args[1:])
    validate(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone keeps the log
        _log_to(run_dir)
    from dltrain.run import run

    result = run(cfg, run_dir, resume=True)
    if result.exit_code == EXIT_BAD_INPUT:
        raise ConfigError(result.summary.get("error", "the run could not be resumed"))
    return result.exit_code


def evaluate(args: list[str]) -> int:
    """`dltrain eval RUN_DIR [KEY=VALUE ...]`: score the run's best weights on its test split."""
    run_dir = _run_dir(args, "eval")
    cfg = load_run_config(run_dir, args[1:])
    validate(cfg)
    from rich import get_console
    from rich.table import Table

    from dltrain.log.console import fmt
    from dltrain.run import evaluate_run

    result = evaluate_run(cfg, run_dir)
    table = Table(title=f"dltrain eval · {result['checkpoint']} (step {result['step']})")
    table.add_column("")
    table.add_column("value", justify="right")
    for split in ("test", "val"):
        for key, value in result[split].items():
            table.add_row(f"{split}/{key}", fmt(value))
    get_console().print(table)
    print(f"wrote {run_dir / 'eval.json'}")
    return 0


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
    "resume": resume,
    "eval": evaluate,
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
    except BrokenPipeError:  # `dltrain list | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)
