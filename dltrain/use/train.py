"""`dltrain.train(*overrides, run_dir=None)`: one run, trained in the calling process — the
notebook's way to train, callable again and again without restarting Python.

What it does, and the decisions taken (issue 20):

- The config is the command line's: the same preflight (dltrain/cli/preflight.py: every value
  validated, a key that nothing reads refused), then Hydra's compose API on the same search
  path (conf/, and `config_dir` — the CLI's `-cd DIR` — and `config_name`, its `-cn NAME`).
  A bad override raises ConfigError carrying the sentence that `dltrain` prints after
  "dltrain: ".
- One call is one run. A sweep (`a=1,2`, or `hparams_search=optuna`, which asks for a
  multirun) is refused in one sentence: a notebook loops over `train` in Python and reads the
  runs with dltrain.report's functions (README, "Train from Python"). The CLI's sentence for
  `a=1,2` says "add -m", which a Python caller cannot do: that sentence is the one that differs.
- The run directory is named as the CLI names it — conf/train.yaml's `hydra.run.dir`,
  resolved with its own resolvers (`now`, dltrain.sweep's unique tag): outputs/runs/DATE_TIME_TAG
  under the current directory — unless `run_dir` is given. It holds what a CLI run's holds:
  .hydra/config.yaml, hydra.yaml and overrides.yaml written as Hydra's run_job writes them (so
  `dltrain resume`, `dltrain eval`, `dltrain.load` and the report read it as any run), the log
  file named by the job's logging config (RUN_DIR/train.log) and what `run()` writes. The
  directory is checked first, as the command's preflight checks Hydra's (issue 21): an empty
  `run_dir`, one that cannot be written, one that holds a run (unless trainer.resume=auto
  continues it) or one another process holds (RUN_DIR/.lock) is refused before anything is
  written there.
- How the run ended decides what the caller gets: completed, diverged or failed (an error
  inside training) is returned, its status and `summary["error"]` saying what happened — a loop
  over settings goes on, as a sweep does; a run refused once started (bad input found while
  building it: the CLI's exit code 2) raises ConfigError; an interrupted run (the notebook's
  interrupt is SIGINT: the step is finished, the checkpoint and summary.json written with
  status interrupted) raises KeyboardInterrupt afterwards, naming the directory to resume.
- The process is left as it was found: Hydra's global state (GlobalHydra, HydraConfig),
  logging (the run's handlers are added to the root logger for the call, as Hydra's job
  logging adds them for a CLI run, then removed and closed: none is left behind, none added per
  call), the random states of python, numpy and torch (the run seeds them from trainer.seed;
  the caller's stream goes on as if the run had not drawn from it) and torch's number of
  threads. Deterministic algorithms and denormal flushing are restored by `run()` itself.
- Logging in-process is built here, not by Hydra: Hydra's own way (logging.config.dictConfig)
  closes every handler the caller has, and interpreting the job's logging classes outside
  Hydra would bypass Hydra's target policy. So the handlers are the two of
  conf/hydra/job_logging/dltrain.yaml — the terminal (dltrain's ConsoleHandler) and the file —
  with the formats, file name and level that config gives. A caller whose root logger already
  writes to the terminal (`logging.basicConfig` in the notebook) keeps its own lines and gets
  no second copy from the run's console handler.
- Hydra's callbacks (dltrain's ReportCallback acts at the end of a multirun only) and
  `hydra.verbose` are not applied; `hydra.job.env_set` is, for the call.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltrain.errors import ConfigError
from dltrain.results import EXIT_BAD_INPUT

__all__ = ["TrainResult", "train"]


@dataclass(frozen=True)
class TrainResult:
    """How a run trained by `dltrain.train` ended: `status` (completed | diverged | failed),
    `summary` (summary.json's content), `run_dir` (absolute) and the exit code the CLI would
    have given."""

    status: str
    run_dir: Path
    exit_code: int
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def objective(self) -> float | None:
        """The value a sweeper would have been handed (summary.json's `objective`)."""
        return self.summary.get("objective")


def train(*overrides: str, run_dir: str | os.PathLike | None = None,
          config_dir: str | os.PathLike | None = None,
          config_name: str | None = None) -> TrainResult:
    """Train one run in this process: `dltrain.train("model=cnn", "optim.lr=1e-3")` is
    `dltrain model=cnn optim.lr=1e-3`.

    `run_dir`: where the run is written (None: outputs/runs/DATE_TIME_TAG under the current
    directory, as the CLI names it). `config_dir` and `config_name` are the CLI's `-cd DIR`
    and `-cn NAME`. Raises ConfigError (one sentence) for a bad config or input, and
    KeyboardInterrupt after an interrupted run has saved its checkpoint; see the module's
    docstring for the rest.
    """
    import dltrain.sweep  # noqa: F401  (registers the resolvers of hydra.run.dir)
    from dltrain.cli.preflight import compose_checked, preflight
    from dltrain.cli.sources import hydra_context, sources

    lines = [str(o) for o in overrides]
    src = sources(None if config_dir is None else str(config_dir), config_name)
    _one_run(lines)
    preflight(lines, False, src, output=False)  # the output folder is checked below
    with hydra_context(src):
        cfg = compose_checked(lines, src, with_hydra=True)
    _not_a_sweep(cfg)
    output_dir = _output_dir(cfg, run_dir)
    _check_output(output_dir, cfg)
    with _hydra_job(cfg, output_dir, run_dir is not None) as (task_cfg, spec), \
            _run_logging(spec), _process_state():
        from dltrain.run import run  # torch is imported here, after the config is known good

        result = run(task_cfg, output_dir)
    if result.exit_code == EXIT_BAD_INPUT:
        raise ConfigError(result.summary.get("error", "the run could not start"))
    if result.status == "interrupted":
        from dltrain.rundir import interrupted_note

        raise KeyboardInterrupt(f"{interrupted_note(output_dir)}; summary.json is in "
                                f"{output_dir}")
    return TrainResult(result.status, output_dir, result.exit_code, result.summary)


def _one_run(lines: list[str]) -> None:
    """Refuse sweep syntax (`a=1,2`, `a=range(3)`) in one sentence fit for a Python caller."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    try:
        parsed = OverridesParser.create().parse_overrides(lines)
    except OverrideParseException:
        return  # the preflight says what is wrong, in the CLI's words
    for override in parsed:
        if override.is_sweep_override():
            raise ConfigError(f"{override.input_line} gives several values, and dltrain.train "
                              "trains one run: call it once per value in a loop (or write a "
                              "list as key=[a,b]).")


def _not_a_sweep(cfg) -> None:
    """Refuse a config that asks for a multirun of its own (hparams_search=optuna)."""
    from hydra.types import RunMode

    if cfg.hydra.mode == RunMode.MULTIRUN:
        raise ConfigError("This config asks for a sweep (hydra.mode=MULTIRUN, e.g. "
                          "hparams_search=optuna), and dltrain.train trains one run: run the "
                          "sweep with dltrain -m, or loop over dltrain.train in Python.")


def _output_dir(cfg, run_dir: str | os.PathLike | None) -> Path:
    """The run's directory, absolute: `run_dir`, else hydra.run.dir resolved as Hydra
    resolves it for a CLI run (relative to the current directory)."""
    from omegaconf import OmegaConf

    from dltrain.outdir import check_not_empty

    chosen = run_dir if run_dir is not None else OmegaConf.select(cfg, "hydra.run.dir")
    check_not_empty(os.fspath(chosen), "run_dir" if run_dir is not None else "hydra.run.dir")
    return Path(os.path.abspath(os.fspath(chosen)))


def _check_output(output_dir: Path, cfg) -> None:
    """What the command's preflight checks of its output folder, before anything is written
    there (_hydra_job writes .hydra/ over what it finds): writable, holding no run unless
    trainer.resume=auto continues it, held by no other process."""
    from dltrain.lock import check_free
    from dltrain.outdir import check_new_run, check_writable

    check_writable(output_dir)
    check_new_run(output_dir, cfg.trainer.resume == "auto")
    check_free(output_dir)


@contextlib.contextmanager
def _hydra_job(cfg, output_dir: Path, given: bool) -> Iterator[tuple[Any, dict[str, Any]]]:
    """What Hydra's run_job does around a CLI run's task, for this call: the run's
    directory and .hydra/ files, HydraConfig set (for `${hydra:...}` in a user's config) and
    `hydra.job.env_set` applied, both restored afterwards. Yields the task's config (without
    its `hydra` node) and the job's logging config, resolved."""
    import copy

    from hydra.core.hydra_config import HydraConfig
    from hydra.core.utils import env_override
    from omegaconf import OmegaConf, open_dict, read_write

    with read_write(cfg.hydra.runtime), open_dict(cfg.hydra.runtime):
        cfg.hydra.runtime.output_dir = str(output_dir)
    if given:  # hydra.yaml says where the run went, as for `dltrain hydra.run.dir=DIR`
        with read_write(cfg.hydra.run):
            cfg.hydra.run.dir = str(output_dir)
    holder = HydraConfig.instance()
    before = holder.cfg
    holder.set_config(cfg)
    try:
        task_cfg = copy.deepcopy(cfg)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        hydra_cfg = copy.deepcopy(holder.cfg)
        spec = OmegaConf.to_container(cfg.hydra.job_logging, resolve=True) \
            if cfg.hydra.job_logging is not None else {}
        output_dir.mkdir(parents=True, exist_ok=True)
        if cfg.hydra.output_subdir is not None:  # as run_job writes them (always, over old)
            hydra_dir = output_dir / str(cfg.hydra.output_subdir)
            hydra_dir.mkdir(parents=True, exist_ok=True)
            for name, node in (("config.yaml", task_cfg), ("hydra.yaml", hydra_cfg),
                               ("overrides.yaml", cfg.hydra.overrides.task)):
                (hydra_dir / name).write_text(OmegaConf.to_yaml(node), encoding="utf-8")
        env = OmegaConf.to_container(cfg.hydra.job.env_set, resolve=True) or {}
        with env_override({str(k): str(v) for k, v in env.items()}):
            yield task_cfg, spec
    finally:
        holder.cfg = before


def _echoes(root: logging.Logger) -> bool:
    """Whether the caller's root logger already writes to the terminal."""
    streams = {id(s) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
    return any(isinstance(h, logging.StreamHandler) and not isinstance(h, logging.FileHandler)
               and id(h.stream) in streams for h in root.handlers)


@contextlib.contextmanager
def _run_logging(spec: Mapping[str, Any]) -> Iterator[None]:
    """The job's logging for the call: its file handler(s) and the terminal, with the
    formats and level of the job's logging config, on the root logger; removed and closed
    afterwards, the root's level restored (see the module's docstring)."""
    from dltrain.log.console import ConsoleHandler

    root = logging.getLogger()
    echo = not _echoes(root)
    handlers: list[logging.Handler] = []
    for name in (spec.get("root") or {}).get("handlers") or []:
        conf = (spec.get("handlers") or {}).get(name) or {}
        form = (spec.get("formatters") or {}).get(conf.get("formatter")) or {}
        if "filename" in conf:  # only strings are read: no class is looked up from config
            Path(conf["filename"]).parent.mkdir(parents=True, exist_ok=True)
            handler: logging.Handler = logging.FileHandler(
                conf["filename"], mode=conf.get("mode", "a"), encoding="utf-8")
        elif echo:
            handler = ConsoleHandler()
        else:
            continue
        handler.setFormatter(logging.Formatter(form.get("format"), form.get("datefmt")))
        handlers.append(handler)
    level = logging.getLevelName(str((spec.get("root") or {}).get("level", "INFO")))
    before = root.level
    if isinstance(level, int) and before != logging.NOTSET and level < before:
        root.setLevel(level)
    for handler in handlers:
        root.addHandler(handler)
    try:
        yield
    finally:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()
        root.setLevel(before)


@contextlib.contextmanager
def _process_state() -> Iterator[None]:
    """The random states of python, numpy and torch (CPU, and CUDA once initialised) and
    torch's thread count, as they were before the run."""
    import random

    import numpy as np
    import torch

    python, numpy, cpu = random.getstate(), np.random.get_state(), torch.get_rng_state()
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        random.setstate(python)
        np.random.set_state(numpy)
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
