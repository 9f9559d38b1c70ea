"""The verbs that take a directory: `dltrain resume RUN_DIR`, `dltrain eval RUN_DIR` (a run
directory and KEY=VALUE overrides of its own config) and `dltrain report SWEEP_DIR`."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from dltrain.cli.preflight import unknown_key
from dltrain.config import dotted_keys, validate
from dltrain.errors import ConfigError
from dltrain.results import EXIT_BAD_INPUT

REPORT_USAGE = ("Usage: dltrain report SWEEP_DIR (e.g. outputs/sweeps/<date>_<time>_<tag>): "
                "the table, report.csv, report.md and plots of a sweep.")


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
            raise ConfigError(unknown_key(key, dotted_keys(cfg))) from None
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


def starts_again(run_dir: Path) -> bool:
    """Whether `dltrain resume` starts the run again from its config: it left no checkpoint
    (stopped or failed before its first one) and did not complete. A completed run whose
    checkpoints were removed is not trained again over its record: that resume is refused."""
    if any((run_dir / "checkpoints").glob("*.pt")):
        return False
    try:
        status = json.loads((run_dir / "summary.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        status = None
    return status != "completed"


def resume(args: list[str]) -> int:
    """`dltrain resume RUN_DIR [KEY=VALUE ...]`: continue a run in place, or start it again
    from its own config if it left no checkpoint to continue from."""
    run_dir = _run_dir(args, "resume")
    cfg = load_run_config(run_dir, args[1:])
    validate(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone keeps the log
        _log_to(run_dir)
    from dltrain.run import run

    again = starts_again(run_dir)  # run() says so in the log
    result = run(cfg, run_dir, resume=not again, restart=again)
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
    from dltrain.sweep_report import write_sweep_report  # lazy: no torch, but rich and yaml

    write_sweep_report(Path(args[0]))
    return 0
