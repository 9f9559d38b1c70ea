"""run(cfg, run_dir): the only wiring code. Builds every part from the config, trains, tests,
and writes the run directory. A plain function: tests call it directly, no Hydra involved.
"""

from __future__ import annotations

import logging
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich import get_console

from dltrain.config import validate
from dltrain.data import Data, build_data
from dltrain.data.batches import train_batches
from dltrain.errors import ConfigError, DivergedError
from dltrain.io import write_json
from dltrain.log import Logger, Loggers
from dltrain.log.console import ConsoleLogger, results_table
from dltrain.log.jsonl import JsonlLogger
from dltrain.losses import METRICS, build_loss
from dltrain.models import build_model
from dltrain.models.summary import layer_table
from dltrain.optim import build_optimizer, build_scheduler, penalties
from dltrain.runtime import deterministic, environment, resolve_device, seed_everything
from dltrain.train.checkpoint import rng_state, save_checkpoint
from dltrain.train.loop import autocast, evaluate, fit
from dltrain.train.signals import StopRequest
from dltrain.train.state import Parts, Settings, TrainState

log = logging.getLogger("dltrain")

EXIT_CODES = {"completed": 0, "failed": 1, "diverged": 1, "interrupted": 130}
BAD_INPUT = 2  # the exit code of a run that failed on its config or its data
GROUPS = ("data", "model", "loss", "optim", "sched", "init", "logger")


@dataclass
class RunResult:
    """How a run ended: its status, the process exit code, and summary.json's content."""

    status: str
    exit_code: int
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def objective(self) -> float | None:
        return self.summary.get("objective")


def flat_hparams(cfg: DictConfig) -> dict[str, Any]:
    """Every leaf of the config as `group.key: value` (lists as text), for HParams and reports."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if not str(key).startswith("_"):
                    walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node if isinstance(node, (bool, int, float, str)) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return flat


def _loggers(cfg: DictConfig, run_dir: Path, total_steps: int, start_step: int) -> Loggers:
    sinks: list[Logger] = [
        ConsoleLogger(total_steps, start_step, int(cfg.trainer.max_epochs)),
        JsonlLogger(run_dir / "metrics.jsonl"),
    ]
    if cfg.logger.name == "tensorboard":
        from dltrain.log.tensorboard import TensorBoardLogger

        sinks.append(TensorBoardLogger(run_dir / "tb", purge_step=start_step or None))
    return Loggers(sinks)


def _describe(data: Data, params: int, device: torch.device, cfg: DictConfig) -> str:
    spec = data.spec
    what = (f"{spec.num_classes} classes" if spec.task == "classification"
            else f"{spec.out_features} outputs")
    return (f"{spec.name}: {spec.task}, input {tuple(spec.input_shape)}, {what}, "
            f"{len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test · "
            f"{cfg.model.name}: {params:,} parameters · device {device}")


def _check_monitor(settings: Settings, task: str) -> None:
    allowed = ["val/loss"] + [f"val/{m}" for m in METRICS[task]]
    if settings.monitor not in allowed:
        raise ConfigError(f"trainer.monitor={settings.monitor} is not measured for a {task} "
                          f"task; use one of: auto, {', '.join(allowed)}.")


def run(cfg: DictConfig, run_dir: Path | str) -> RunResult:
    """Train the composed config `cfg`, writing everything into `run_dir`."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    summary: dict[str, Any] = {"status": "failed", "options": {
        g: str(cfg[g].name) for g in GROUPS if g in cfg and "name" in cfg[g]}}
    logger: Logger | None = None
    stop = StopRequest()
    bad_input = False
    hydra_dir = run_dir / ".hydra"
    if not (hydra_dir / "config.yaml").exists():  # Hydra writes it; a direct call does it here
        hydra_dir.mkdir(exist_ok=True)
        (hydra_dir / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    try:
        validate(cfg)
        device = resolve_device(cfg.trainer.device)
        if cfg.trainer.threads:
            torch.set_num_threads(int(cfg.trainer.threads))
        seed = int(cfg.trainer.seed)
        seed_everything(seed)
        with deterministic(bool(cfg.trainer.deterministic)):
            data = build_data(cfg.data, device)
            spec = data.spec
            summary["task"] = spec.task
            model = build_model(cfg.model, cfg.init, spec).to(device)
            batches = train_batches(data, int(cfg.data.batch_size), seed)
            settings = Settings.from_cfg(cfg.trainer, spec.task, int(cfg.data.batch_size))
            _check_monitor(settings, spec.task)
            optimizer = build_optimizer(cfg.optim, model)
            total_steps = settings.total_steps(len(batches))
            parts = Parts(
                model=model,
                forward=torch.compile(model) if cfg.trainer.compile else model,
                loss=build_loss(cfg.loss, spec).to(device),
                optimizer=optimizer,
                scheduler=build_scheduler(cfg.sched, optimizer, total_steps),
                scaler=torch.amp.GradScaler(device.type) if settings.precision == "16" else None,
                penalties=penalties(cfg.penalty),
            )
            params = sum(p.numel() for p in model.parameters())
            summary.update(params=params, device=str(device))
            log.info(_describe(data, params, device, cfg))
            get_console().print(layer_table(model, spec))
            log.info(f"run directory: {run_dir}")

            state = TrainState()
            config = OmegaConf.to_container(cfg, resolve=True)
            meta = {"config": config, "spec": spec.to_dict(), "norm": data.norm}

            def save(state: TrainState, is_best: bool) -> None:
                weights = {"model": model.state_dict(), "state": state.to_dict(), **meta}
                save_checkpoint(run_dir / "checkpoints" / "last.pt", {
                    **weights,
                    "optimizer": optimizer.state_dict(),
                    "scheduler": parts.scheduler.state_dict() if parts.scheduler else None,
                    "scaler": parts.scaler.state_dict() if parts.scaler else None,
                    "rng": rng_state(),
                })
                if is_best:
                    save_checkpoint(run_dir / "checkpoints" / "best.pt", weights)

            logger = _loggers(cfg, run_dir, total_steps, state.step)
            with stop.on_signals():
                status = fit(parts, batches, data.val, spec.task, settings, state, logger, save,
                             stop, device)
            summary.update(_progress(state, settings))
            summary["status"] = status
            if status == "completed":
                best = run_dir / "checkpoints" / "best.pt"
                if best.exists():
                    model.load_state_dict(torch.load(best, map_location=device,
                                                     weights_only=True)["model"])
                amp = autocast(device, settings.precision)
                test = evaluate(parts, data.test, spec.task, settings.eval_batch_size, amp)
                summary["test"] = test
                test_tags = {f"test/{k}": v for k, v in test.items()}
                logger.log_metrics(test_tags, state.step)
                val_tags = {f"val/{k}": v for k, v in state.last_val.items()}
                logger.log_hparams(flat_hparams(cfg), {**test_tags, **val_tags})
    except ConfigError as err:
        summary.update(status="failed", error=str(err))
        bad_input = True
    except DivergedError as err:
        summary.update(status="diverged", error=str(err))
        log.error(str(err))
    except KeyboardInterrupt:
        summary.update(status="interrupted", error="stopped at once by a second interrupt")
    except Exception as err:  # recorded, not hidden: the run's end is always written down
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        log.error("training failed:\n%s", traceback.format_exc())
    finally:
        if logger is not None:
            logger.close()
        summary["wall_s"] = round(time.perf_counter() - started, 3)
        summary["env"] = environment()
        write_json(run_dir / "summary.json", summary)
    if summary["status"] == "interrupted":
        log.warning(f"interrupted by {stop.signal or 'SIGINT'}; checkpoint saved in "
                    f"{run_dir / 'checkpoints'}; continue with: dltrain resume {run_dir}")
    if not bad_input:
        get_console().print(results_table(summary))
    status = summary["status"]
    return RunResult(status, BAD_INPUT if bad_input else EXIT_CODES[status], summary)


def _progress(state: TrainState, settings: Settings) -> dict[str, Any]:
    """The summary's account of how far training went and how well it did."""
    return {
        "epochs": state.epoch,
        "steps": state.step,
        "samples_per_s": round(state.samples / state.train_s, 1) if state.train_s else None,
        "best": {"metric": settings.monitor, "mode": settings.mode, "value": state.best_value,
                 "step": state.best_step},
        "val": state.best_val,
        "objective": state.best_value,
    }
