"""run(cfg, run_dir): the story of one run — validate, build, restore, fit, test, summary.

A plain function: tests call it directly, no Hydra involved. Each chapter lives in a module
of its own: the job is assembled by dltrain.job, resumed by dltrain.training.resume, trained by
dltrain.training.loop.fit, scored by dltrain.evaluate, and written down by dltrain.rundir.
`resume=True` (or `trainer.resume=auto` with a checkpoint in the run directory) continues an
interrupted run where it stopped.
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from rich import get_console

from dltrain.config import plain, validate
from dltrain.errors import ConfigError
from dltrain.evaluate import evaluate_run, flops, test_best, test_resolutions
from dltrain.job import build_job, describe_job, job_data
from dltrain.lock import RunLock, take
from dltrain.log import Loggers, NullLogger
from dltrain.log.console import ConsoleLogger
from dltrain.log.curves import CURVES_FILE, CurvesLogger, Elsewhere
from dltrain.models.summary import layer_table
from dltrain.outdir import check_new_run, check_writable, run_marks
from dltrain.pinn.report import pinn_summary, with_term_log
from dltrain.probes.build import build_probes
from dltrain.results import RunResult, option_label, progress, run_options, with_baseline
from dltrain.rundir import Record, file_loggers, refused, start_up, write_config
from dltrain.runtime import deterministic, resolve_device, seed_everything
from dltrain.training.checkpoint import Checkpoints, checkpoint_meta, rank_save
from dltrain.training.distributed import Dist, device_of, from_env, process_group
from dltrain.training.loop import fit
from dltrain.training.resume import finished, fork_rng, restore, resume_payload
from dltrain.training.signals import StopRequest
from dltrain.training.state import Job, TrainState

__all__ = ["RunResult", "build_job", "evaluate_run", "run"]

log = logging.getLogger("dltrain")


def run(cfg: DictConfig, run_dir: Path | str | None, resume: bool = False,
        stop: StopRequest | None = None, restart: bool = False,
        painter: Elsewhere | None = None) -> RunResult:
    """Train the composed config `cfg`, writing everything into `run_dir`.

    With `resume`, continue from `run_dir/checkpoints/last.pt`: same directory, same
    TensorBoard run, same step counter, the same data order and random numbers. With
    `restart`, start the run already in `run_dir` again from `cfg` (it left no checkpoint).
    Without either (or trainer.resume=auto), a directory that holds a run is refused; a
    directory another process holds (RUN_DIR/.lock) is refused; nothing is written then.

    Under torchrun (`trainer=ddp`) every rank calls this; rank 0's `run_dir` is the one
    directory of the job (other ranks may pass None) and rank 0 alone writes into it.

    `stop` (by default the one `dltrain` installed for the command, StopRequest.current) is
    read between the phases before training and after every step; its handlers stay
    installed until summary.json is written and the exit code chosen. A second Ctrl-C stops
    at once only where the run's record writes that end down (Record.ending).

    `painter` (dltrain.log.painter.Painter, which the command line starts) draws curves.png
    in a process of its own; without one the run draws it itself.
    """
    stop = stop or StopRequest.current()
    with stop.on_signals(second_stops=False):
        return _run(cfg, run_dir, resume, stop, restart, painter)


def _run(cfg: DictConfig, run_dir: Path | str | None, resume: bool, stop: StopRequest,
         restart: bool, painter: Elsewhere | None) -> RunResult:
    try:
        validate(cfg)
        config = plain(cfg)
        d = from_env(str(config["trainer"]["strategy"]))
        device = device_of(d, resolve_device(config["trainer"]["device"]))
    except ConfigError as err:
        return refused(cfg, run_dir, err)
    with process_group(d, device):
        run_dir = Path(d.broadcast(None if run_dir is None else str(run_dir)))
        claim = _claim(run_dir, config, resume or restart) if d.is_main else None
        refusal = d.broadcast(claim if isinstance(claim, str) else None)
        if refusal is not None:  # not this run's directory to write: nothing is written there
            return RunResult.of({"status": "failed", "error": refusal,
                                 "options": run_options(config)}, bad_input=True)
        with claim if isinstance(claim, RunLock) else nullcontext():  # released on any exit
            if d.is_main:
                write_config(cfg, run_dir, False)  # a continued run's: once it continues
            record = Record(config, run_dir, d.is_main, d.world)
            _guard(record, cfg, resume, restart)
            with record.ending(), stop.at_once():
                _train(config, record, resume, stop, d, device, painter)
            return record.close(stop.signal)  # the status is decided: a signal is only noted


def _claim(run_dir: Path, config: dict[str, Any], continuing: bool) -> RunLock | str:
    """Rank 0 takes the run directory before anything is written into it: a folder that can
    be written, locked for this process, holding no run unless this one continues it
    (`continuing`, or trainer.resume=auto), its checkpoints/ and tb/ writable. Returns the
    lock, or the sentence of the refusal."""
    try:
        check_writable(run_dir)
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = take(run_dir)
    except ConfigError as err:
        return str(err)
    try:
        check_new_run(run_dir, continuing or config["trainer"]["resume"] == "auto")
        for folder in ("checkpoints", "tb"):  # not found out after training
            check_writable(run_dir / folder, "The run's folder")
    except ConfigError as err:
        lock.release()
        return str(err)
    return lock


def _guard(record: Record, cfg: DictConfig, resume: bool, restart: bool) -> None:
    """Whether this run continues (or starts again) the run already in its directory, whose
    summary and config then stand until training restarts (Record.guard)."""
    run_dir = record.run_dir
    auto = cfg.trainer.resume == "auto"
    if resume or (auto and (run_dir / "checkpoints" / "last.pt").exists()):
        record.guard(cfg)
    elif restart or (auto and run_marks(run_dir)):
        record.guard(cfg, restart=True)
        if record.is_main:
            log.info(f"{run_dir} has no checkpoint: the run starts again from its config "
                     f"({run_dir / '.hydra' / 'config.yaml'}).")


def _train(config: dict[str, Any], record: Record, resume: bool, stop: StopRequest, d: Dist,
           device: torch.device, painter: Elsewhere | None) -> None:
    trainer, run_dir = config["trainer"], record.run_dir
    if trainer["threads"]:
        torch.set_num_threads(int(trainer["threads"]))
    seed_everything(int(trainer["seed"]))

    def check() -> None:  # a stop requested so far ends the run here (Stopped), on every rank
        stop.check(d.any(stop.requested, device))

    with deterministic(bool(trainer["deterministic"])):
        check()
        payload = resume_payload(run_dir, resume, str(trainer["resume"]))
        data = job_data(config, device)  # bad data is refused before the imports below
        check()
        # what only a process's first run pays (torch.optim's first optimiser imports
        # torch._dynamo): out of wall_s, so that a sweep's first job compares with the others
        record.set_aside(start_up(pictures_here=painter is None))
        job = build_job(config, device, d=d, data=data)
        record.summary["task"] = job.spec.task
        if job.data.facts:  # what the reader of the user's own files decided, and why
            record.summary["data"] = job.data.facts
        fork_rng(int(trainer["seed"]), d)
        state = restore(job.parts, job.data, job.spec, payload, config, d) \
            if payload else TrainState()
        check()
        done = finished(state, job.settings) if payload else None
        if done and resume:
            raise ConfigError(f"This run is finished ({done}); to train on, raise the budget, "
                              "e.g. dltrain resume RUN_DIR trainer.max_epochs=N.")
        if done:  # trainer.resume=auto on a resubmitted, finished job: nothing to do
            log.info(f"{run_dir} is already finished ({done}).")
            record.keep = True
            return
        record.begin()  # training (re)starts: from here on the directory's record is this run's
        params = sum(p.numel() for p in job.parts.model.parameters())
        record.summary.update(params=params, device=str(device))
        if d.is_main:
            log.info(describe_job(job, params, option_label(config["model"])))
            get_console().print(layer_table(job.parts.model, job.spec))
            log.info(f"resuming at step {state.step}: {run_dir}" if payload
                     else f"run directory: {run_dir}")
            curves = CurvesLogger(run_dir / CURVES_FILE, job.settings.monitor,
                                  config.get("name") or run_dir.name, state.step, painter=painter)
            record.logger = Loggers([
                ConsoleLogger(job.total_steps, state.step, int(trainer["max_epochs"])),
                curves,  # before the file sinks: its last picture is drawn before they close
                *file_loggers(config, run_dir, state.step)])
        logger = record.logger or NullLogger()
        meta = checkpoint_meta(config, job.spec.to_dict(), job.data)
        save = Checkpoints(job.parts, meta, run_dir / "checkpoints", d) if d.is_main \
            else rank_save(d)
        hooks = with_term_log(build_probes(config, job, logger, run_dir, d.is_main), job, logger)
        stopped = d.any(stop.requested, device)  # before fit: ranks agree, as they do in it
        status = "interrupted" if stopped else fit(job, state, logger, save, stop, d, hooks)
        if d.is_main:
            curves.training_over()  # its painter draws the last picture while the run tests
        record.summary.update(progress(state, job.settings), status=status)
        record.summary["val"] = with_baseline(record.summary["val"], job.data.facts, "val")
        record.summary.update(_throughput(job, config, record.summary, state, d))
        record.summary.update(pinn_summary(job))
        if status == "completed" and d.is_main:
            record.summary["test"] = test_best(job, run_dir, logger, state.step)
            # operator data: the best weights on the test samples at other resolutions too
            record.summary.update(test_resolutions(job, logger, state.step))
        # A signal once training is over (the final validation, the test) lets the run end
        # completed, exit 0: its checkpoints are written, the test is one pass over the test
        # split, and a run stopped there would be neither complete nor resumable (a resume
        # finds nothing left to train). A second Ctrl-C still stops it at once (interrupted).
        if status == "completed" and stop.requested and d.is_main:
            log.warning(f"{stop.signal} came after training had finished: the run was "
                        "completed (validated and tested), nothing was cut short")


def _throughput(job: Job, config: dict[str, Any], summary: dict[str, Any], state: TrainState,
                d: Dist) -> dict[str, Any]:
    """Tokens/s of a language model, FLOPs and MFU of a transformer, and whether the replicas
    of a data-parallel job ended equal."""
    extra: dict[str, Any] = {}
    rate = summary["samples_per_s"]
    if job.spec.task == "language_model" and rate:
        # a sample is a window of block_size tokens: tokens/s is the usual measure
        extra["tokens_per_s"] = round(rate * job.spec.input_shape[0], 1)
    if config["model"]["name"] == "transformer" and d.is_main and state.step:
        extra.update(flops(job, rate))
    if d.active:
        extra["replicas_in_sync"] = d.in_sync(job.parts.model)
    return extra
