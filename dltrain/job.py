"""build_job(cfg, device): a run's parts, assembled from its config in one place.

A `Job` is the data, its spec, the model, the loss, the optimiser and schedule, the trainer's
settings and the batches. `run`, `dltrain eval`, the vectorised stack (and `predict` and
`load` next) build theirs here, so that a key travels from the config to the object that uses
it through this one module. The config is read as plain values: the builders never see a
DictConfig.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch

from dltrain.adam_lbfgs import lbfgs_from, switch_step
from dltrain.config import plain
from dltrain.data import Data, build_data
from dltrain.data.batches import train_batches
from dltrain.data.memory import out_of_memory_refused
from dltrain.data.spec import Split
from dltrain.data.tasks import with_task
from dltrain.errors import ConfigError
from dltrain.losses import METRICS, build_loss, loss_spec
from dltrain.models import build_model
from dltrain.models.footprint import check_activations, check_parameters, model_label
from dltrain.optim import build_optimizer, build_scheduler, penalties
from dltrain.pinn.loss import PinnLoss
from dltrain.pinn.network import in_own_precision, learned
from dltrain.pinn.problem import PinnBatches, pinn_data, problem
from dltrain.training.distributed import SINGLE, Dist
from dltrain.training.state import Job, Parts, Settings

log = logging.getLogger("dltrain")


def batch_size(data_cfg: Mapping[str, Any], data: Data) -> int:
    """`data.batch_size`, with `full` meaning the whole training split (gradient descent)."""
    size = data_cfg["batch_size"]
    return len(data.train) if size == "full" else int(size)


def job_data(cfg: Mapping[str, Any], device: torch.device) -> Data:
    """The data a job of `cfg` trains on (build_job reads it itself when not handed it): a
    caller that must know the data is good before anything else is paid reads it first.
    A physics-informed job's data are its equation's points and reference solution."""
    c = plain(cfg)
    if c["task"] == "pinn":
        return pinn_data(problem(c["pde"]), int(c["trainer"]["seed"]), device)
    return build_data(c["data"], device)


def build_job(cfg: Mapping[str, Any], device: torch.device,
              with_optimizer: bool = True, d: Dist = SINGLE, data: Data | None = None) -> Job:
    """Data, model, loss, optimiser and schedule, in that order, from the config.

    The model is built from `loss_spec(...)`: the data's spec as the loss wants it. Without
    an optimiser (for evaluation) the job holds no optimiser and no schedule. In a
    data-parallel job the model trains inside DistributedDataParallel and each rank takes its
    shard of every batch. `data`, when given, is `build_data(cfg.data)` made already (jobs
    of a vectorised stack with the same data share one copy; building data draws nothing
    from the global random state, so the model's initialisation is the same either way).
    """
    c = plain(cfg)
    trainer = c["trainer"]
    data = with_task(job_data(c, device) if data is None else data, c["task"])
    spec = loss_spec(c["loss"], data.spec)
    pinn = problem(c["pde"]) if spec.task == "pinn" else None
    size = len(data.train) if pinn else batch_size(c["data"], data)
    settings = Settings.from_cfg(trainer, spec.task, size)
    check_monitor(settings, spec.task)
    # the batches draw nothing from the global random state: made before the model, so that
    # what their sizes rule out is refused before the model costs anything
    batches = PinnBatches(pinn, data, int(trainer["seed"]),
                          lbfgs_from(c["optim"], settings.total_steps(1))) if pinn \
        else train_batches(data, size, int(trainer["seed"]), d.shard)
    # what training needs is checked where there is training (not for evaluation)
    fits = None
    if with_optimizer:
        check_accumulate(settings.accumulate, len(batches), batches.batch_size, spec.name)
        fits = check_parameters(c["model"], spec, c["optim"], device)
    with out_of_memory_refused(f"Building {model_label(c['model'])}",
                               "use a smaller model"):
        model = build_model(c["model"], c["init"], spec).to(device)
    if c["optim"].get("lbfgs_dtype") == "float64" and not pinn:
        # optim=adam_lbfgs moves the weights to float64 at the switch: the inputs follow
        # (a PINN's model does this itself, pinn.network)
        model.register_forward_pre_hook(in_own_precision)
    if fits is not None:
        check_activations(model, c["model"], spec, fits, batches.batch_size // d.shard.count,
                          device, settings.precision)
    if sync_batchnorm(trainer["sync_batchnorm"], device, model, d):  # before the optimiser
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    total_steps = settings.total_steps(len(batches))
    if channels_last(trainer["channels_last"], device, model):
        # conv kernels on GPUs run fastest on NHWC; the data is laid out once
        model = model.to(memory_format=torch.channels_last)
        for split in (data.train, data.val, data.test):
            if isinstance(split, Split) and split.x.ndim == 4:
                split.x = split.x.contiguous(memory_format=torch.channels_last)
    with out_of_memory_refused(f"The optimiser of {model_label(c['model'])}",
                               "use a smaller model"):
        optimizer = build_optimizer(switch_step(c["optim"], total_steps), model) \
            if with_optimizer else None
    forward: Any = model
    if d.active:
        from torch.nn.parallel import DistributedDataParallel

        forward = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    parts = Parts(
        model=model,
        forward=torch.compile(forward) if compiles(trainer, total_steps) else forward,
        eval_forward=model if d.active else None,
        loss=(PinnLoss(pinn, learned(model)) if pinn else build_loss(c["loss"], spec)).to(device),
        optimizer=optimizer,
        scheduler=build_scheduler(c["sched"], optimizer, total_steps) if optimizer else None,
        scaler=torch.amp.GradScaler(device.type) if settings.precision == "16" else None,
        penalties=penalties(c["penalty"]),
    )
    if spec.task == "generation":  # scored on what it generates (the fid), not batch by batch
        from dltrain.generation.score import build_scorer

        parts.scorer = build_scorer(c, model, parts.loss, data, device)
    return Job(data, spec, parts, settings, batches, total_steps, device)


def check_accumulate(accumulate: int, batches: int, batch: int, data_name: str) -> None:
    """Refuse trainer.accumulate larger than an epoch's batches: no optimiser step could be
    taken (the loop would end at once, reported as a divergence)."""
    if accumulate > batches:
        raise ConfigError(
            f"trainer.accumulate={accumulate} takes {accumulate} batches for one optimiser "
            f"step, but an epoch of data={data_name} has only {batches} batch"
            f"{'es' if batches != 1 else ''} of {batch}; use trainer.accumulate={batches} or "
            "less, or a smaller data.batch_size.")


def check_monitor(settings: Settings, task: str) -> None:
    allowed = ["val/loss"] + [f"val/{m}" for m in METRICS[task]]
    if settings.monitor not in allowed:
        raise ConfigError(f"trainer.monitor={settings.monitor} is not measured for a {task} "
                          f"task; use one of: auto, {', '.join(allowed)}.")


def channels_last(choice: bool | str, device: torch.device, model: torch.nn.Module) -> bool:
    """trainer.channels_last: auto means on CUDA for a model with 2-D convolutions."""
    if choice != "auto":
        return bool(choice)
    return device.type == "cuda" and any(isinstance(m, torch.nn.Conv2d) for m in model.modules())


def sync_batchnorm(choice: bool | str, device: torch.device, model: torch.nn.Module, d: Dist
                   ) -> bool:
    """trainer.sync_batchnorm: whether batch norm, in a data-parallel job, normalises over the
    global batch (PyTorch's SyncBatchNorm, which runs on GPUs only) rather than over each
    process's share of it. auto: on GPUs."""
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)
    if not d.active or not any(isinstance(m, norms) for m in model.modules()):
        return False
    gpu = device.type == "cuda"
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


def compiles(trainer: Mapping[str, Any], total_steps: int) -> bool:
    """torch.compile when asked for, unless the run is too short to repay the compile time
    (tens of seconds): trainer.compile_min_steps is that budget, in optimiser steps."""
    if not trainer["compile"]:
        return False
    minimum = int(trainer["compile_min_steps"])
    if total_steps < minimum:
        log.info(f"not compiling: {total_steps} steps are too few to repay torch.compile's "
                 f"start-up (trainer.compile_min_steps={minimum})")
        return False
    return True


def describe_job(job: Job, params: int, model_name: str) -> str:
    """One line: the data (task, shapes, split sizes), the model and the device."""
    spec, data = job.spec, job.data
    # the user's own files say what they decided and why ("regression: column 'y' holds floats")
    task = data.facts["why"] if data.facts.get("task") == spec.task else spec.task
    what = (f"{spec.num_classes} classes" if spec.task == "classification"
            else f"a vocabulary of {spec.vocab_size}" if spec.task == "language_model"
            else f"{spec.out_features} outputs")
    return (f"{spec.name}: {task}, input {tuple(spec.input_shape)}, {what}, "
            f"{len(data.train)}/{len(data.val)}/{len(data.test)} train/val/test · "
            f"{model_name}: {params:,} parameters · device {job.device}")
