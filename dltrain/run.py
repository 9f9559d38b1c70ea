"""run(cfg, run_dir): the only wiring code. Builds every part from the config, trains, tests,
and writes the run directory. Plain functions: tests call them directly, no Hydra involved.

`run` also continues an interrupted run (`resume=True`, or `trainer.resume=auto` when the run
directory already holds a checkpoint), and `evaluate_run` scores a finished run's best weights.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich import get_console

from dltrain.config import validate, written
from dltrain.data import Data, build_data
from dltrain.data.batches import train_batches
from dltrain.data.spec import DataSpec, Split
from dltrain.data.tasks import with_task
from dltrain.errors import ConfigError, DivergedError
from dltrain.io import write_json
from dltrain.log import Logger, Loggers, NullLogger
from dltrain.log.console import ConsoleLogger, results_table
from dltrain.log.jsonl import JsonlLogger
from dltrain.losses import METRICS, build_loss, loss_spec
from dltrain.models import build_model
from dltrain.models.summary import layer_table
from dltrain.optim import build_optimizer, build_scheduler, penalties
from dltrain.perf import peak_tflops, training_flops_per_sample, utilisation
from dltrain.probes import build_probes
from dltrain.runtime import (
    derived_seed,
    deterministic,
    environment,
    resolve_device,
    seed_everything,
)
from dltrain.train.checkpoint import load_checkpoint, rng_state, save_checkpoint, set_rng_state
from dltrain.train.distributed import (
    SINGLE,
    Dist,
    device_of,
    from_env,
    process_group,
)
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


@dataclass
class Job:
    """Everything a run builds from its config before training."""

    data: Data
    spec: DataSpec  # the model's view of the data (a binary loss asks for one logit)
    parts: Parts
    settings: Settings
    batches: Any
    total_steps: int
    device: torch.device


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


def _batch_size(cfg: DictConfig, data: Data) -> int:
    """`data.batch_size`, with `full` meaning the whole training split (gradient descent)."""
    return len(data.train) if cfg.data.batch_size == "full" else int(cfg.data.batch_size)


def _check_monitor(settings: Settings, task: str) -> None:
    allowed = ["val/loss"] + [f"val/{m}" for m in METRICS[task]]
    if settings.monitor not in allowed:
        raise ConfigError(f"trainer.monitor={settings.monitor} is not measured for a {task} "
                          f"task; use one of: auto, {', '.join(allowed)}.")


def build_job(cfg: DictConfig, device: torch.device, with_optimizer: bool = True,
              d: Dist = SINGLE, data: Data | None = None) -> Job:
    """Data, model, loss, optimiser and schedule, in that order, from the config.

    The model is built from `loss_spec(...)`: the data's spec as the loss wants it. Without
    an optimiser (for evaluation) the job holds no optimiser and no schedule. In a
    data-parallel job the model trains inside DistributedDataParallel and each rank takes its
    shard of every batch. `data`, when given, is `build_data(cfg.data)` made already (jobs
    of a vectorised stack with the same data share one copy; building data draws nothing
    from the global random state, so the model's initialisation is the same either way).
    """
    data = with_task(build_data(cfg.data, device) if data is None else data, cfg.get("task"))
    spec = loss_spec(cfg.loss, data.spec)
    model = build_model(cfg.model, cfg.init, spec).to(device)
    if _sync_batchnorm(cfg, device, model, d):  # before the optimiser takes the parameters
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    batch_size = _batch_size(cfg, data)
    settings = Settings.from_cfg(cfg.trainer, spec.task, batch_size)
    _check_monitor(settings, spec.task)
    batches = train_batches(data, batch_size, int(cfg.trainer.seed), d.shard)
    total_steps = settings.total_steps(len(batches))
    channels_last = _channels_last(cfg, device, model)
    if channels_last:  # conv kernels on GPUs run fastest on NHWC; the data is laid out once
        model = model.to(memory_format=torch.channels_last)
        for split in (data.train, data.val, data.test):
            if isinstance(split, Split) and split.x.ndim == 4:
                split.x = split.x.contiguous(memory_format=torch.channels_last)
    optimizer = build_optimizer(cfg.optim, model, device) if with_optimizer else None
    forward: Any = model
    if d.active:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    parts = Parts(
        model=model,
        forward=torch.compile(forward) if _compile(cfg, total_steps) else forward,
        eval_forward=model if d.active else None,
        loss=build_loss(cfg.loss, spec).to(device),
        optimizer=optimizer,
        scheduler=build_scheduler(cfg.sched, optimizer, total_steps) if optimizer else None,
        scaler=torch.amp.GradScaler(device.type) if settings.precision == "16" else None,
        penalties=penalties(cfg.penalty),
    )
    return Job(data, spec, parts, settings, batches, total_steps, device)


class Checkpoints:
    """A run's checkpoints/: last.pt with everything a resume needs, best.pt with the weights.

    Called as `save(state, is_best)` after each validation: last.pt always, best.pt when the
    monitored metric improved. `compose` makes both from states kept elsewhere, for a caller
    that writes them later (the members of a vectorised stack).
    """

    def __init__(self, job: Job, cfg: DictConfig, run_dir: Path, d: Dist = SINGLE) -> None:
        self.parts = job.parts
        self.folder = run_dir / "checkpoints"
        self.meta = {"config": OmegaConf.to_container(cfg, resolve=True),
                     "spec": job.spec.to_dict(), "norm": job.data.norm}
        self.d = d

    def payloads(self, state: TrainState) -> tuple[dict[str, Any], dict[str, Any]]:
        """(last.pt, best.pt) of the run as it stands now. In a data-parallel job last.pt also
        holds every process's random state (`rng_ranks`; the others send theirs, see
        `rank_save`): each draws its own dropout masks, and a resume gives each its own back."""
        parts, rng = self.parts, rng_state()
        ranks = self.d.gather(rng)
        last, best = self.compose(state, parts.model.state_dict(), parts.optimizer.state_dict(),
                                  parts.scheduler.state_dict() if parts.scheduler else None,
                                  parts.scaler.state_dict() if parts.scaler else None, rng)
        if self.d.active:
            last["rng_ranks"] = ranks
        return last, best

    def compose(self, state: TrainState, model: dict[str, Any],
                optimizer: dict[str, Any] | None = None, scheduler: Any = None,
                scaler: Any = None, rng: dict[str, Any] | None = None
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        """(last.pt, best.pt) from the given states; best.pt's entries are last.pt's own."""
        weights = {"model": model, "state": state.to_dict(), **self.meta}
        return {**weights, "optimizer": optimizer, "scheduler": scheduler, "scaler": scaler,
                "rng": rng}, weights

    def write(self, last: dict[str, Any] | None, best: dict[str, Any] | None) -> None:
        if last is not None:
            save_checkpoint(self.folder / "last.pt", last)
        if best is not None:
            save_checkpoint(self.folder / "best.pt", best)

    def __call__(self, state: TrainState, is_best: bool) -> None:
        last, best = self.payloads(state)
        self.write(last, best if is_best else None)


def _channels_last(cfg: DictConfig, device: torch.device, model: torch.nn.Module) -> bool:
    """trainer.channels_last: auto means on CUDA for a model with 2-D convolutions."""
    choice = cfg.trainer.get("channels_last", "auto")
    if choice != "auto":
        return bool(choice)
    return device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def _sync_batchnorm(cfg: DictConfig, device: torch.device, model: torch.nn.Module, d: Dist
                    ) -> bool:
    """trainer.sync_batchnorm: whether batch norm, in a data-parallel job, normalises over the
    global batch (PyTorch's SyncBatchNorm, which runs on GPUs only) rather than over each
    process's share of it. auto: on GPUs."""
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    if not d.active or not any(isinstance(m, norms) for m in model.modules()):
        return False
    choice, gpu = cfg.trainer.get("sync_batchnorm", "auto"), device.type == "cuda"
    if choice is True and not gpu:
        raise ConfigError(f"trainer.sync_batchnorm=true needs GPUs (PyTorch's SyncBatchNorm "
                          f"does not run on the {device.type}); use auto or false, and each "
                          "process normalises its own share of the batch.")
    if gpu if choice == "auto" else bool(choice):
        return True
    log.info(f"batch norm under ddp on {device.type}: each process normalises its own 1/{d.world} "
             "of the batch, so training differs a little from one process "
             "(trainer.sync_batchnorm=true on GPUs normalises over the whole batch)")
    return False


def _compile(cfg: DictConfig, total_steps: int) -> bool:
    """torch.compile when asked for, unless the run is too short to repay the compile time
    (tens of seconds): trainer.compile_min_steps is that budget, in optimiser steps."""
    if not cfg.trainer.compile:
        return False
    minimum = int(cfg.trainer.get("compile_min_steps", 0))
    if total_steps < minimum:
        log.info(f"not compiling: {total_steps} steps are too few to repay torch.compile's "
                 f"start-up (trainer.compile_min_steps={minimum})")
        return False
    return True


def _load_weights(model: torch.nn.Module, payload: dict[str, Any], cfg: DictConfig) -> None:
    """The checkpoint's weights into `model`, built from `cfg`; a model whose shapes differ is
    refused naming the model keys that `cfg` changed from the run's own config."""
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        saved = (payload.get("config") or {}).get("model") or {}
        now = OmegaConf.to_container(cfg.model, resolve=True)
        assert isinstance(now, dict)
        changed = [f"model.{k}={written(now.get(k))} instead of the run's {written(saved.get(k))}"
                   for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        why = ", ".join(changed) if changed else str(err).splitlines()[0]
        raise ConfigError(f"The checkpoint's weights do not fit the model this config builds "
                          f"({why}); keep the run's model settings.") from None


def restore(job: Job, payload: dict[str, Any], cfg: DictConfig, d: Dist = SINGLE
            ) -> TrainState:
    """Put the model, optimiser, schedule, scaler and RNGs back where a checkpoint left them
    (each process of a data-parallel job its own RNG state)."""
    saved_spec = DataSpec.from_dict(payload["spec"])
    if saved_spec != job.spec:
        raise ConfigError("The checkpoint was trained on other data than this config builds "
                          f"({saved_spec.name} {saved_spec.input_shape} -> {job.spec.name} "
                          f"{job.spec.input_shape}); resume with the run's own data settings.")
    parts = job.parts
    _load_weights(parts.model, payload, cfg)
    parts.optimizer.load_state_dict(payload["optimizer"])
    if parts.scheduler is not None and payload.get("scheduler") is not None:
        parts.scheduler.load_state_dict(payload["scheduler"])
    if parts.scaler is not None and payload.get("scaler") is not None:
        parts.scaler.load_state_dict(payload["scaler"])
    state = TrainState.from_dict(payload["state"])
    ranks = payload.get("rng_ranks") or []
    if len(ranks) == d.world:
        set_rng_state(ranks[d.rank])
    else:  # saved by another number of processes: rank 0's stream, forked from this step
        set_rng_state(payload["rng"])
        fork_rng(int(cfg.trainer.seed), d, state.step)
    return state


def file_loggers(cfg: DictConfig, run_dir: Path, start_step: int = 0) -> list[Logger]:
    """The sinks of a run's own files: metrics.jsonl and (logger=tensorboard) RUN_DIR/tb."""
    sinks: list[Logger] = [JsonlLogger(run_dir / "metrics.jsonl")]
    if cfg.logger.name == "tensorboard":
        from dltrain.log.tensorboard import TensorBoardLogger

        sinks.append(TensorBoardLogger(run_dir / "tb", purge_step=start_step or None))
    return sinks


def _loggers(cfg: DictConfig, run_dir: Path, total_steps: int, start_step: int) -> Loggers:
    console = ConsoleLogger(total_steps, start_step, int(cfg.trainer.max_epochs))
    return Loggers([console, *file_loggers(cfg, run_dir, start_step)])


def describe_job(job: Job, params: int, cfg: DictConfig) -> str:
    """One line: the data (task, shapes, split sizes), the model and the device."""
    spec, data = job.spec, job.data
    what = (f"{spec.num_classes} classes" if spec.task == "classification"
            else f"a vocabulary of {spec.vocab_size}" if spec.task == "language_model"
            else f"{spec.out_features} outputs")
    return (f"{spec.name}: {spec.task}, input {tuple(spec.input_shape)}, {what}, "
            f"{len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test · "
            f"{cfg.model.name}: {params:,} parameters · device {job.device}")


def _resume_payload(cfg: DictConfig, run_dir: Path, resume: bool) -> dict[str, Any] | None:
    """The checkpoint to continue from: asked for, or found by trainer.resume=auto."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume or (str(cfg.trainer.get("resume", "never")) == "auto" and last.exists()):
        return load_checkpoint(last)
    return None


def write_config(cfg: DictConfig, run_dir: Path, resume: bool) -> None:
    """.hydra/config.yaml: Hydra writes it for its runs; direct calls and resumes write it here
    (a resume with overrides must leave the config the run continued with)."""
    path = run_dir / ".hydra" / "config.yaml"
    if resume or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(OmegaConf.to_yaml(cfg))


def run(cfg: DictConfig, run_dir: Path | str | None, resume: bool = False,
        stop: StopRequest | None = None) -> RunResult:
    """Train the composed config `cfg`, writing everything into `run_dir`.

    With `resume`, continue from `run_dir/checkpoints/last.pt`: same directory, same
    TensorBoard run, same step counter, the same data order and random numbers.

    Under torchrun (`trainer=ddp`) every rank calls this; rank 0's `run_dir` is the one
    directory of the job (other ranks may pass None) and rank 0 alone writes into it.
    """
    try:
        validate(cfg)
        d = from_env(str(cfg.trainer.get("strategy", "single")))
        device = device_of(d, resolve_device(cfg.trainer.device))
    except ConfigError as err:
        return _refused(cfg, run_dir, err)
    with process_group(d, device):
        run_dir = Path(d.broadcast(None if run_dir is None else str(run_dir)))
        return _run(cfg, run_dir, resume, stop or StopRequest(), d, device)


def _refused(cfg: DictConfig, run_dir: Path | str | None, err: ConfigError) -> RunResult:
    """A run that could not start: its summary says why (where there is a directory)."""
    summary = {"status": "failed", "error": str(err), "options": run_options(cfg)}
    if run_dir is not None and (Path(run_dir) / ".hydra").exists():
        write_json(Path(run_dir) / "summary.json", summary)
    return RunResult("failed", BAD_INPUT, summary)


def run_options(cfg: DictConfig) -> dict[str, str]:
    """summary.json's `options`: the option chosen in each config group."""
    return {g: str(cfg[g].name) for g in GROUPS if g in cfg and "name" in cfg[g]}


def _run(cfg: DictConfig, run_dir: Path, resume: bool, stop: StopRequest, d: Dist,
         device: torch.device) -> RunResult:
    started = time.perf_counter()
    summary: dict[str, Any] = {"status": "failed", "options": run_options(cfg)}
    if d.active:
        summary["world_size"] = d.world
    logger: Logger | None = None
    bad_input = keep_summary = False
    if d.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_config(cfg, run_dir, resume)
    try:
        with stop.on_signals():  # from the start: a SIGTERM while loading still ends cleanly
            if cfg.trainer.threads:
                torch.set_num_threads(int(cfg.trainer.threads))
            seed_everything(int(cfg.trainer.seed))
            with deterministic(bool(cfg.trainer.deterministic)):
                payload = _resume_payload(cfg, run_dir, resume)
                job = build_job(cfg, device, d=d)
                summary["task"] = job.spec.task
                fork_rng(int(cfg.trainer.seed), d)
                state = restore(job, payload, cfg, d) if payload else TrainState()
                finished = payload is not None and _finished(state, job.settings)
                if finished and resume:
                    raise ConfigError(f"This run is finished ({finished}); to train on, raise "
                                      "the budget, e.g. dltrain resume RUN_DIR "
                                      "trainer.max_epochs=N.")
                if finished:  # trainer.resume=auto on a resubmitted, finished job: nothing to do
                    log.info(f"{run_dir} is already finished ({finished}).")
                    keep_summary = True
                    return _existing_result(run_dir)
                params = sum(p.numel() for p in job.parts.model.parameters())
                summary.update(params=params, device=str(device))
                if d.is_main:
                    log.info(describe_job(job, params, cfg))
                    get_console().print(layer_table(job.parts.model, job.spec))
                    log.info(f"resuming at step {state.step}: {run_dir}" if payload
                             else f"run directory: {run_dir}")
                    logger = _loggers(cfg, run_dir, job.total_steps, state.step)
                save = Checkpoints(job, cfg, run_dir, d) if d.is_main else rank_save(d)
                hooks = build_probes(cfg, job, logger or NullLogger(), run_dir, d.is_main)
                status = "interrupted" if stop.requested else fit(
                    job.parts, job.batches, job.data.val, job.spec.task, job.settings, state,
                    logger or NullLogger(), save, stop, device, d, hooks)
                summary.update(progress(state, job.settings), status=status)
                if job.spec.task == "language_model" and summary["samples_per_s"]:
                    # a sample is a window of block_size tokens: tokens/s is the usual measure
                    summary["tokens_per_s"] = round(
                        summary["samples_per_s"] * job.spec.input_shape[0], 1)
                if cfg.model.name == "transformer" and d.is_main and state.step:
                    summary.update(_flops(job, summary["samples_per_s"]))
                if d.active:
                    summary["replicas_in_sync"] = d.in_sync(job.parts.model)
                if status == "completed" and d.is_main:
                    _test(job, run_dir, summary, state, logger)
    except ConfigError as err:
        summary.update(status="failed", error=str(err))
        bad_input = True
        keep_summary = resume  # a refused resume leaves the run's own summary as it was
    except DivergedError as err:
        summary.update(status="diverged", error=str(err))
        log.error(str(err))
    except KeyboardInterrupt:
        summary.update(status="interrupted", error="stopped at once by a second interrupt")
    except Exception as err:  # recorded, not hidden: the run's end is always written down
        summary.update(status="failed", error=f"{type(err).__name__}: {err}")
        log.error("training failed:\n%s", traceback.format_exc())
    finally:
        if logger is not None:  # the HParams record of every run that got as far as logging
            try:
                logger.log_hparams(flat_hparams(cfg), summary["status"])
            except Exception as err:  # never at the cost of summary.json
                log.warning(f"no HParams record: {type(err).__name__}: {err}")
            logger.close()
        if not keep_summary and d.is_main:
            summary["wall_s"] = round(time.perf_counter() - started, 3)
            summary["env"] = environment()
            write_json(run_dir / "summary.json", summary)
    if summary["status"] == "interrupted" and d.is_main:
        log.warning(f"interrupted by {stop.signal or 'SIGINT'}; checkpoint saved in "
                    f"{run_dir / 'checkpoints'}; continue with: dltrain resume {run_dir}")
    if not bad_input and d.is_main:
        get_console().print(results_table(summary))
    status = summary["status"]
    return RunResult(status, BAD_INPUT if bad_input else EXIT_CODES[status], summary)


def rank_save(d: Dist) -> Callable[[TrainState, bool], None]:
    """The `save` of a rank other than 0: it keeps no files, and sends its random state to
    rank 0's checkpoint (a collective: every rank saves at the same points)."""

    def save(_state: TrainState, _is_best: bool) -> None:
        d.gather(rng_state())

    return save


def fork_rng(seed: int, d: Dist, step: int = 0) -> None:
    """Give each process of a data-parallel job a random stream of its own, once the model is
    initialised (alike on every rank): dropout masks must differ between the processes' shares
    of a batch. Rank 0 keeps the stream one process would have."""
    if d.rank:
        torch.manual_seed(derived_seed(seed, "rank", d.rank, step))


def _finished(state: TrainState, settings: Settings) -> str | None:
    """Why a checkpointed run has nothing left to do under `settings`, or None."""
    if state.stopped_early:
        return "it stopped early"
    if state.epoch >= settings.max_epochs or state.step >= (settings.max_steps or float("inf")):
        return f"it reached epoch {state.epoch}, step {state.step}"
    return None


def _existing_result(run_dir: Path) -> RunResult:
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    return RunResult(summary["status"], EXIT_CODES.get(summary["status"], 1), summary)


def _test(job: Job, run_dir: Path, summary: dict[str, Any], state: TrainState,
          logger: Logger) -> None:
    """Score the best weights on the test split, into the summary and the logs."""
    best = run_dir / "checkpoints" / "best.pt"
    if best.exists():
        job.parts.model.load_state_dict(load_checkpoint(best)["model"])
    amp = autocast(job.device, job.settings.precision)
    test = evaluate(job.parts, job.data.test, job.spec.task, job.settings.eval_batch_size, amp)
    summary["test"] = test
    logger.log_metrics({f"test/{k}": v for k, v in test.items()}, state.step)


def _flops(job: Job, samples_per_s: float | None) -> dict[str, Any]:
    """Training FLOPs per sample, TFLOP/s achieved and MFU (where the device's peak is known)."""
    try:
        x, _ = next(iter(job.batches.epoch(0)))  # a training batch as the steps took them
        per_sample = training_flops_per_sample(job.parts.model, x)
    except Exception as err:  # a diagnostic: never at the cost of the run's summary
        log.warning(f"no FLOP count: {type(err).__name__}: {err}")
        return {}
    return utilisation(per_sample, samples_per_s, peak_tflops(job.device, job.settings.precision))


def progress(state: TrainState, settings: Settings) -> dict[str, Any]:
    """The summary's account of how far training went and how well it did."""
    progress = {
        "epochs": state.epoch,
        "steps": state.step,
        "samples_per_s": round(state.samples / state.train_s, 1) if state.train_s else None,
        "best": {"metric": settings.monitor, "mode": settings.mode, "value": state.best_value,
                 "step": state.best_step},
        "val": state.best_val,
        "objective": state.best_value,
        "stopped_early": state.stopped_early,
    }
    if settings.nan_policy == "skip":
        progress["skipped_steps"] = state.skipped
    return progress


def evaluate_run(cfg: DictConfig, run_dir: Path | str) -> dict[str, Any]:
    """Rebuild a run from `cfg` (its own config), load best.pt (else last.pt), score the test
    and validation splits, and write eval.json."""
    run_dir = Path(run_dir)
    validate(cfg)
    device = resolve_device(cfg.trainer.device)
    checkpoints = run_dir / "checkpoints"
    path = checkpoints / "best.pt" if (checkpoints / "best.pt").exists() else \
        checkpoints / "last.pt"
    payload = load_checkpoint(path)
    seed_everything(int(cfg.trainer.seed))
    job = build_job(cfg, device, with_optimizer=False)
    _load_weights(job.parts.model, payload, cfg)
    amp = autocast(device, job.settings.precision)
    batch = job.settings.eval_batch_size
    result = {
        "checkpoint": str(path),
        "step": payload["state"]["step"],
        "task": job.spec.task,
        "test": evaluate(job.parts, job.data.test, job.spec.task, batch, amp),
        "val": evaluate(job.parts, job.data.val, job.spec.task, batch, amp),
    }
    write_json(run_dir / "eval.json", result)
    return result
