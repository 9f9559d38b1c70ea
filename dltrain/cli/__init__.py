"""The `dltrain` command: verbs, the Hydra entry point, error messages and exit codes.

Verbs (`list`, ...) are dispatched before Hydra sees the arguments; everything else is a Hydra
app. Before Hydra runs anything, `preflight` composes the config for every value the
overrides take and validates it, so a typo or an out-of-range value is answered in one
sentence with exit code 2 — before any training, and without importing torch.

The package is the only part of dltrain that imports Hydra's application machinery:
options.py (the config tree), sources.py (a user's `-cd DIR` and `-cn NAME`), listing.py
(`dltrain list`), preflight.py (compose and validate first), keys.py (refuse a key that
nothing reads), app.py (the Hydra app, its --help and its task), runs.py (resume, eval,
report), predict.py and export.py (a finished run put to use: dltrain.use does the work).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Sequence
from importlib import import_module
from typing import Any

from dltrain.training.signals import StopRequest, signal_at

__all__ = ["CONFIG_NAME", "VERBS", "conf_dir", "defaults", "evaluate", "groups",
           "list_options", "load_run_config", "main", "report", "resume"]

# The verbs, and the names this package offers, by the module that defines them: imported when
# first used, once main() has installed its signal handlers. Importing them (OmegaConf, Hydra's
# parser) takes about 0.1 s, in which a SIGTERM would otherwise end the process with 143.
VERBS: dict[str, str] = {
    "list": "dltrain.cli.listing:list_options",
    "resume": "dltrain.cli.runs:resume",
    "eval": "dltrain.cli.runs:evaluate",
    "report": "dltrain.cli.runs:report",
    "predict": "dltrain.cli.predict:predict",
    "export": "dltrain.cli.export:export",
}
_NAMES = {"CONFIG_NAME": "dltrain.cli.options", "conf_dir": "dltrain.cli.options",
          "defaults": "dltrain.cli.options", "groups": "dltrain.cli.options",
          "evaluate": "dltrain.cli.runs", "load_run_config": "dltrain.cli.runs",
          "report": "dltrain.cli.runs", "resume": "dltrain.cli.runs",
          "list_options": "dltrain.cli.listing"}
# (preflight and explain are dltrain.cli.preflight's: the submodule's name would hide them)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(import_module(_NAMES[name]), name)
    raise AttributeError(f"module 'dltrain.cli' has no attribute {name!r}")


def verb(name: str) -> Callable[[list[str]], int]:
    """The function of the verb `name` (a key of VERBS)."""
    module, function = VERBS[name].split(":")
    return getattr(import_module(module), function)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the `dltrain` console script.

    From its first instruction a SIGINT or SIGTERM ends the command in exit 130 without a
    traceback: before a run it stops at once, inside one the run stops cleanly and writes
    summary.json (dltrain/training/signals.py). Without `argv` main() is the process's entry
    point (the console script, `python -m dltrain`): its handlers stay until the process
    ends, so that a signal in the interpreter's own exit cannot turn the chosen exit code into
    143. Called with `argv` (from Python), it gives the caller's handlers back.
    """
    stop, previous = StopRequest(), {}
    try:
        previous = stop.install()
        signal_at("start")
        code = _command(list(sys.argv[1:] if argv is None else argv), stop)
    except KeyboardInterrupt:  # before a run, or a second Ctrl-C: stopped at once
        print(f"dltrain: interrupted by {stop.signal or 'SIGINT'}", file=sys.stderr)
        code = 130  # dltrain.results.EXIT_INTERRUPTED, not imported before the handlers
    finally:
        stop.settle()  # the exit code is chosen: a signal from here on is only noted
        if argv is not None:
            stop.restore(previous)
        else:  # the process's own exit: Python's finalisation puts back the default
            # handlers (a SIGTERM there would end it with 143 after summary.json said
            # otherwise) but keeps an ignored signal ignored
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_IGN)
    sys.exit(code)


def _command(argv: list[str], stop: StopRequest) -> int:
    """Run a verb or train; the exit code."""
    from dltrain.errors import ConfigError
    from dltrain.results import EXIT_BAD_INPUT

    # `data._target_=mymodule.load`, `model._target_=mymodule.MyNet`: a module of the current
    # folder is found as `python` finds it (a console script's path starts at its bin/ instead)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    if len(argv) > 2 and argv[0] in ("-cd", "--config-dir") and argv[2] == "list":
        argv = [argv[2], *argv[3:], *argv[:2]]  # dltrain -cd DIR list: the verb first
    try:
        if argv and argv[0] in VERBS:
            code = verb(argv[0])(argv[1:])
        else:
            from dltrain.cli.app import train  # Hydra's app: loaded when it trains

            code = train(argv, stop)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"dltrain: {err}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except BrokenPipeError:  # `dltrain list | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    return code

