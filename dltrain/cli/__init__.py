"""The `dltrain` command: verbs, the Hydra entry point, error messages and exit codes.

Verbs (`list`, ...) are dispatched before Hydra sees the arguments; everything else is a Hydra
app. Before Hydra runs anything, `preflight` composes the config for every value the
overrides take and validates it, so a typo or an out-of-range value is answered in one
sentence with exit code 2 — before any training, and without importing torch.

The package is the only part of dltrain that imports Hydra's application machinery:
options.py (the config tree, `dltrain list`), preflight.py (compose and validate first),
app.py (the Hydra app, its --help and its task), runs.py (resume, eval, report).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from dltrain.cli.options import CONFIG_NAME, conf_dir, defaults, groups, list_options
from dltrain.cli.preflight import explain, preflight
from dltrain.cli.runs import evaluate, load_run_config, report, resume
from dltrain.errors import ConfigError
from dltrain.results import EXIT_BAD_INPUT

__all__ = ["CONFIG_NAME", "VERBS", "conf_dir", "defaults", "evaluate", "explain",
           "groups", "list_options", "load_run_config", "main", "preflight", "report", "resume"]

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
            from dltrain.cli.app import train  # Hydra's app: loaded when it trains

            code = train(argv)
    except ConfigError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"dltrain: {err}", file=sys.stderr)
        code = EXIT_BAD_INPUT
    except BrokenPipeError:  # `dltrain list | head`: the reader left, which is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)

