"""What a run writes into its directory besides checkpoints: its config, the loggers of its
files (metrics.jsonl, tb/), and summary.json — written whatever the end was."""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich import get_console

from dltrain.config import chosen_loggers
from dltrain.errors import ConfigError, DivergedError
from dltrain.hparams import flat_hparams, session_group
from dltrain.io import write_json
from dltrain.log import Logger
from dltrain.log.console import results_table
from dltrain.log.jsonl import JsonlLogger
from dltrain.results import RunResult, run_options
from dltrain.runtime import environment

log = logging.getLogger("dltrain")


def write_config(cfg: DictConfig, run_dir: Path, resume: bool) -> None:
    """.hydra/config.yaml: Hydra writes it for its runs; direct calls and resumes write it here
    (a resume with overrides must leave the config the run continued with), as composed."""
    path = run_dir / ".hydra" / "config.yaml"
    if resume or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(OmegaConf.to_yaml(cfg))


def file_loggers(config: Mapping[str, Any], run_dir: Path, start_step: int = 0
                 ) -> list[Logger]:
    """The sinks of a run's own files and trackers: metrics.jsonl always, and those of the
    loggers the config chooses (logger=[tensorboard,mlflow]): RUN_DIR/tb, an MLflow run."""
    chosen = chosen_loggers(config)
    sinks: list[Logger] = [JsonlLogger(run_dir / "metrics.jsonl")]
    if "tensorboard" in chosen:
        from dltrain.log.tensorboard import TensorBoardLogger

        sinks.append(TensorBoardLogger(run_dir / "tb", purge_step=start_step or None,
                                       group=session_group(flat_hparams(config)),
                                       flush_secs=float(chosen["tensorboard"].get("flush_secs",
                                                                                  10))))
    if "mlflow" in chosen:
        from dltrain.log.mlflow import MlflowLogger

        sinks.append(MlflowLogger(run_dir, config, chosen["mlflow"]))
    return sinks


def refused(config: Mapping[str, Any], run_dir: Path | str | None, err: ConfigError
            ) -> RunResult:
    """A run that could not start: its summary says why (where there is a directory)."""
    summary = {"status": "failed", "error": str(err), "options": run_options(config)}
    if run_dir is not None and (Path(run_dir) / ".hydra").exists():
        write_json(Path(run_dir) / "summary.json", summary)
    return RunResult.of(summary, bad_input=True)


def start_up() -> float:
    """Seconds spent on what only the first run of a process pays, the imports that every run
    makes lazily: torch.optim's first optimiser imports torch._dynamo (2 s and more), the
    first curves.png matplotlib (against ~0 s once imported). Paid once the data is read
    (a run refused for its data pays nothing) and set aside from the run's clock
    (Record.set_aside), so that wall_s is the run's own and a sweep's first job compares with
    the others; summary.json's startup_s says what it cost."""
    started = time.perf_counter()
    import matplotlib.backends.backend_agg  # (what savefig of a Figure loads)
    import matplotlib.figure  # noqa: F401
    import torch._dynamo  # noqa: F401  (what torch.optim.Optimizer.__init__ imports lazily)

    return round(time.perf_counter() - started, 3)


class Record:
    """A run's account of itself: summary.json's content as the run goes, its loggers, and
    how it ended. `ending()` turns whatever stops the run into a status; `close()` writes the
    HParams record and summary.json (on the main process) and gives the result."""

    def set_aside(self, seconds: float) -> None:
        """Time that is not the run's own (start_up's imports): out of wall_s, as startup_s."""
        self.started += seconds
        self.summary["startup_s"] = seconds

    def __init__(self, config: Mapping[str, Any], run_dir: Path, is_main: bool = True,
                 world: int = 1) -> None:
        self.config, self.run_dir, self.is_main = config, run_dir, is_main
        self.started = time.perf_counter()
        self.summary: dict[str, Any] = {"status": "failed", "options": run_options(config)}
        if config.get("name") is not None:  # name=lr-study: the run's name, for its readers
            self.summary["name"] = str(config["name"])
        if world > 1:
            self.summary["world_size"] = world
        self.logger: Logger | None = None  # once the run got as far as logging
        self.bad_input = False
        self.keep = False  # the directory's own summary.json stands (finished, or refused)

    @contextmanager
    def ending(self, resume: bool) -> Iterator[None]:
        """Record how the block ended: refused, diverged, interrupted at once, or failed."""
        try:
            yield
        except ConfigError as err:
            self.summary.update(status="failed", error=str(err))
            self.bad_input = True
            self.keep = self.keep or resume  # a refused resume leaves the run's summary as it was
        except DivergedError as err:
            self.summary.update(status="diverged", error=str(err))
            log.error(str(err))
        except KeyboardInterrupt:
            self.summary.update(status="interrupted",
                                error="stopped at once by a second interrupt")
        except Exception as err:  # recorded, not hidden: the run's end is always written down
            self.summary.update(status="failed", error=f"{type(err).__name__}: {err}")
            log.error("training failed:\n%s", traceback.format_exc())

    def close(self, signal: str | None = None) -> RunResult:
        if self.logger is not None:
            try:  # the HParams record of every run that got as far as logging
                self.logger.log_hparams(flat_hparams(self.config), self.summary["status"])
            except Exception as err:  # never at the cost of summary.json
                log.warning(f"no HParams record: {type(err).__name__}: {err}")
        if not self.keep and self.is_main:
            self.summary["wall_s"] = round(time.perf_counter() - self.started, 3)
            self.summary["env"] = environment()
            write_json(self.run_dir / "summary.json", self.summary)
        if self.logger is not None:  # after summary.json: a sink may carry it (MLflow)
            self.logger.close()
        if self.keep and not self.bad_input:  # a finished run asked to go on: nothing to do
            return RunResult.read(self.run_dir)
        if self.summary["status"] == "interrupted" and self.is_main:
            log.warning(f"interrupted by {signal or 'SIGINT'}; checkpoint saved in "
                        f"{self.run_dir / 'checkpoints'}; continue with: dltrain resume "
                        f"{self.run_dir}")
        if not self.bad_input and self.is_main:
            get_console().print(results_table(self.summary))
        return RunResult.of(self.summary, self.bad_input)
