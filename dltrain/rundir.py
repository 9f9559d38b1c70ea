"""What a run writes into its directory besides checkpoints: its config, the loggers of its
files (metrics.jsonl, tb/), and summary.json — written whatever the end was."""

from __future__ import annotations

import logging
import shutil
import time
import traceback
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich import get_console

from dltrain.choices import chosen_loggers
from dltrain.data.memory import ran_out
from dltrain.errors import ConfigError, DivergedError
from dltrain.hparams import flat_hparams, session_group
from dltrain.io import NoSpaceError, write_json
from dltrain.log import Logger
from dltrain.log.console import results_table
from dltrain.log.jsonl import JsonlLogger
from dltrain.outdir import run_marks
from dltrain.results import RunResult, run_options
from dltrain.runtime import environment
from dltrain.training.signals import Stopped

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
    # never over the summary of a run that trained there (a resume refused for its config)
    if run_dir is not None and (Path(run_dir) / ".hydra").exists() and not run_marks(run_dir):
        write_json(Path(run_dir) / "summary.json", summary)
    return RunResult.of(summary, bad_input=True)


def interrupted_note(run_dir: Path, signal: str | None = None) -> str:
    """What an interrupted run says: where its checkpoint is and how to continue, or, if it
    stopped before its first checkpoint, that a resume starts it again."""
    stopped = f"interrupted by {signal}" if signal else "interrupted"
    if (run_dir / "checkpoints" / "last.pt").exists():
        return (f"{stopped}; checkpoint saved in {run_dir / 'checkpoints'}; continue with: "
                f"dltrain resume {run_dir}")
    return (f"{stopped} before the first checkpoint (none saved); dltrain resume {run_dir} "
            "starts the run again from its config")


def start_up(pictures_here: bool = True) -> float:
    """Seconds spent on what only the first run of a process pays, the imports that every run
    makes lazily: torch.optim's first optimiser imports torch._dynamo (2 s and more), the
    first curves.png matplotlib (against ~0 s once imported; not where a painter process
    draws the pictures: `pictures_here` False). Paid once the data is read (a run refused
    for its data pays nothing) and set aside from the run's clock (Record.set_aside), so that
    wall_s is the run's own and a sweep's first job compares with the others; summary.json's
    startup_s says what it cost."""
    started = time.perf_counter()
    if pictures_here:
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
        self.pending: DictConfig | None = None  # set by guard(): the run is not yet continued
        self.restart = False

    @property
    def guarded(self) -> bool:
        """Whether the run already in the directory stands until training restarts."""
        return self.pending is not None

    def guard(self, cfg: DictConfig, restart: bool = False) -> None:
        """This run continues the run already in the directory (a resume, trainer.resume=auto
        finding its checkpoint) or, with `restart`, starts it again (it left no checkpoint): its
        summary.json and .hydra/config.yaml stand until training restarts (`begin`), so that a
        resume refused or failing before then leaves the run as it was."""
        self.pending, self.restart = cfg, restart

    def begin(self) -> None:
        """Training (re)starts: from here on the directory's record is this run's. A continued
        run's config, overrides included, replaces the old; a restarted run's earlier metrics
        and events go (the same config and seed log them again)."""
        if self.pending is not None and self.is_main:
            write_config(self.pending, self.run_dir, True)
            if self.restart:
                (self.run_dir / "metrics.jsonl").unlink(missing_ok=True)
                shutil.rmtree(self.run_dir / "tb", ignore_errors=True)
        self.pending = None

    @contextmanager
    def ending(self) -> Iterator[None]:
        """Record how the block ended: refused, diverged, interrupted at once, or failed."""
        try:
            yield
        except ConfigError as err:
            self.summary.update(status="failed", error=str(err))
            self.bad_input = True
            self.keep = self.keep or self.guarded  # a refused resume leaves the run as it was
        except DivergedError as err:
            self.summary.update(status="diverged", error=str(err))
            log.error(str(err))
        except Stopped as err:  # a stop requested before training began: nothing to save
            self.summary.update(status="interrupted", error=f"stopped by {err} before training")
            self.keep = self.keep or self.guarded
        except KeyboardInterrupt:
            self.summary.update(status="interrupted",
                                error="stopped at once by a second interrupt")
            self.keep = self.keep or self.guarded
        except NoSpaceError as err:  # a full device: its sentence says all, what is kept too
            self.summary.update(status="failed", error=str(err))
            log.error(str(err))
            self.keep = self.keep or self.guarded
        except Exception as err:  # recorded, not hidden: the run's end is always written down
            phrase = ran_out(err)
            if phrase:  # an allocation that failed while training: what ran out, no traceback
                sentence = (f"Training stopped: {phrase}; use a smaller data.batch_size or "
                            "model.")
                self.summary.update(status="failed", error=sentence)
                log.error(sentence)
            else:
                self.summary.update(status="failed", error=f"{type(err).__name__}: {err}")
                log.error("training failed:\n%s", traceback.format_exc())
            self.keep = self.keep or self.guarded  # a resume that failed before it continued

    def close(self, signal: str | None = None) -> RunResult:
        if self.logger is not None:
            try:  # the HParams record of every run that got as far as logging
                self.logger.log_hparams(flat_hparams(self.config), self.summary["status"])
            except Exception as err:  # never at the cost of summary.json
                log.warning(f"no HParams record: {type(err).__name__}: {err}")
        if not self.keep and self.is_main:
            self.summary["wall_s"] = round(time.perf_counter() - self.started, 3)
            self.summary["env"] = environment()
            try:
                write_json(self.run_dir / "summary.json", self.summary)
            except NoSpaceError as err:  # said, not a traceback; and the run did not end well
                log.error(f"{err}; summary.json was not written")
                self.summary.update(status="failed", error=str(err))
        if self.logger is not None:  # after summary.json: a sink may carry it (MLflow)
            self.logger.close()
        if self.keep and not self.bad_input and "error" not in self.summary:
            return RunResult.read(self.run_dir)  # a finished run asked to go on: nothing to do
        if self.summary["status"] == "interrupted" and self.is_main:
            log.warning(interrupted_note(self.run_dir, signal or "SIGINT"))
        if not self.bad_input and self.is_main:
            get_console().print(results_table(self.summary))
        return RunResult.of(self.summary, self.bad_input)
