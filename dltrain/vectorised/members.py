"""The members of a vectorised stack: each one's run, built as it builds itself, and the
files it receives (config, logs, checkpoints, summary) through dltrain's own writers."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from dltrain.config import plain
from dltrain.data import Data
from dltrain.data.batches import ShuffledBatches
from dltrain.errors import ConfigError
from dltrain.hparams import flat_hparams
from dltrain.io import write_json
from dltrain.job import build_job, describe_job, job_data
from dltrain.log import Logger, Loggers, NullLogger
from dltrain.log.console import LineLogger
from dltrain.log.curves import CURVES_FILE, CurvesLogger
from dltrain.log.painter import Pictures
from dltrain.pinn.problem import PinnBatches
from dltrain.pinn.report import pinn_summary
from dltrain.probes.build import build_probes
from dltrain.results import option_label, progress, run_options, with_baseline
from dltrain.rundir import file_loggers, write_config
from dltrain.runtime import seed_everything
from dltrain.training.checkpoint import Checkpoints, checkpoint_meta, rng_state
from dltrain.training.hooks import NO_HOOKS, Hooks
from dltrain.training.state import Job, TrainState
from dltrain.vectorised.model import Unstackable, check_layers
from dltrain.vectorised.optim import Layout, StackedOptimizer

log = logging.getLogger("dltrain")

@dataclass
class Member:
    """One run of the stack: its config and directory, its own built job, where it stands."""

    cfg: DictConfig  # as given (read by its probes)
    config: dict[str, Any]  # resolved, plain: what its parts are built from
    run_dir: Path
    job: Job
    rng: dict[str, Any]  # python, numpy and torch random states, as its run has them
    generator: torch.Generator  # its dropout masks: the torch stream its run draws from
    state: TrainState = field(default_factory=TrainState)
    logger: Logger = field(default_factory=NullLogger)
    checkpoints: Checkpoints | None = None
    hooks: Hooks = NO_HOOKS  # its probes; a stack calls only their `end` (choices.PROBES)
    # Where it stood at its last validation (or stop): its run's last.pt, not yet written;
    # and its best validation so far (the weights are the stack's `best` row), if not written.
    snapshot: Snapshot | None = None
    best_state: TrainState | None = None
    status: str = "running"  # running | completed | diverged | interrupted | failed
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"


def _data_key(config: dict[str, Any]) -> str:
    """Members with equal keys train on one copy of their data: what job_data reads (a
    physics-informed member's first draw of points comes from its seed)."""
    if config["task"] == "pinn":
        return json.dumps([config["pde"], config["trainer"]["seed"]], sort_keys=True)
    return json.dumps(config["data"], sort_keys=True)


def build_members(cfgs: Sequence[DictConfig], run_dirs: Sequence[Path], device: torch.device
                  ) -> tuple[list[Member], list[Data], list[int]]:
    """Each member built as its run builds itself; members with the same data share it.

    Returns the members, the distinct data sets and which one each member trains on.
    Raises Unstackable (nothing written yet) if they cannot train as one stack.
    """
    members: list[Member] = []
    datasets: dict[str, int] = {}
    data: list[Data] = []
    which: list[int] = []
    for cfg, run_dir in zip(cfgs, run_dirs, strict=True):
        config = plain(cfg)
        key = _data_key(config)
        try:
            seed_everything(int(config["trainer"]["seed"]))
            if key not in datasets:
                datasets[key] = len(data)
                data.append(job_data(config, device))
            job = build_job(config, device, data=data[datasets[key]])
        except ConfigError as err:  # each job says so itself, when it runs alone
            raise Unstackable(f"building the stack failed ({err})") from None
        except Exception as err:  # one member that cannot be built must not end the sweep:
            # alone, the others train and it fails in its own run, with its own error
            raise Unstackable(f"building {Path(run_dir).name} failed "
                              f"({type(err).__name__}: {err})") from None
        rng = rng_state()
        generator = torch.Generator()
        generator.set_state(rng["torch"])
        which.append(datasets[key])
        members.append(Member(cfg, config, Path(run_dir), job, rng, generator))
    first = members[0].job
    if type(first.batches) not in (ShuffledBatches, PinnBatches):
        kind = type(first.batches).__name__
        raise Unstackable(f"data={first.spec.name} trains on {kind}, not on shuffled index "
                          "slices of one split (or on collocation points); only those are "
                          "stacked")
    check_layers(first.parts.model, str(members[0].config["model"]["name"]))
    return members, data, which


@dataclass(frozen=True)
class Snapshot:
    """What a member's last.pt holds, taken when its run would write it: its training state,
    the stack's parameters and optimiser state (shared by the members taken at that moment),
    its schedule and its random stream."""

    state: TrainState
    flat: torch.Tensor
    buffers: dict[str, torch.Tensor]
    optimizer: StackedOptimizer
    scheduler: Any
    generator: torch.Tensor


def load_row(member: Member, layout: Layout, row: torch.Tensor,
          buffers: dict[str, torch.Tensor]) -> torch.nn.Module:
    """The member's own model, holding the parameters of `row` and `buffers` (its rows)."""
    model = member.job.parts.model
    rows = layout.row(row)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(rows[name])
        for name, b in model.named_buffers():
            b.copy_(buffers[name])
    return model


def row_weights(member: Member, layout: Layout, row: torch.Tensor,
             buffers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The member's model's state_dict with the parameters of `row` and its rows of the
    stack's `buffers` (copies)."""
    model = load_row(member, layout, row, buffers)
    return {k: v.clone() for k, v in model.state_dict().items()}


def buffer_row(buffers: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    return {name: b[i] for name, b in buffers.items()}


def open_members(members: Sequence[Member], index_of: int) -> Pictures:
    """Run directories, configs, loggers and checkpoint writers of the members; the members'
    curves.png, handed in as they close, to be drawn together (Pictures.draw).

    A member's .hydra/config.yaml is written here only where there is none: the vectorised
    launcher writes Hydra's .hydra files (the config as composed, what a resume reads)
    before the stack trains; a direct call gets the config it was given, as `run` does."""
    first = members[0]
    params = sum(p.numel() for p in first.job.parts.model.parameters())
    pictures = Pictures()
    for i, m in enumerate(members):
        m.run_dir.mkdir(parents=True, exist_ok=True)
        write_config(m.cfg, m.run_dir, False)
        lines = LineLogger(m.run_dir / "train.log", int(m.config["trainer"]["max_epochs"]),
                           m.job.total_steps)
        lines.line(describe_job(m.job, params, option_label(m.config["model"])))
        lines.line(f"run directory: {m.run_dir}")
        lines.line(f"trained by the vectorised launcher as member {i + 1} of a stack of "
                   f"{len(members)}" + (f" (stack {index_of})" if index_of else ""))
        # curves.png at the member's end only, drawn with the others' (CurvesLogger says why)
        curves = CurvesLogger(m.run_dir / CURVES_FILE, m.job.settings.monitor,
                              m.config.get("name") or m.run_dir.name, at_validations=False,
                              pictures=pictures)
        m.logger = Loggers([lines, curves, *file_loggers(m.config, m.run_dir)])
        meta = checkpoint_meta(m.config, m.job.spec.to_dict(), m.job.data)
        m.checkpoints = Checkpoints(m.job.parts, meta, m.run_dir / "checkpoints")
        m.hooks = build_probes(m.config, m.job, m.logger, m.run_dir, True)
    return pictures


def member_summary(m: Member, params: int, device: torch.device, test: dict[str, float],
             size: int, index: int) -> dict[str, Any]:
    """summary.json of a member: the keys its own run writes, plus where in the stack it was."""
    summary: dict[str, Any] = {"status": m.status, "options": run_options(m.config),
                               "task": m.job.spec.task, "params": params, "device": str(device)}
    if m.config.get("name") is not None:  # as dltrain.rundir.Record writes it
        summary["name"] = str(m.config["name"])
    if m.job.data.facts:  # what the reader of the user's own files decided, and why
        summary["data"] = m.job.data.facts
    if m.status in ("completed", "interrupted"):
        summary.update(progress(m.state, m.job.settings), status=m.status)
        summary["val"] = with_baseline(summary["val"], m.job.data.facts, "val")
    if m.status == "completed":
        test = summary["test"] = with_baseline(test, m.job.data.facts, "test")
        m.logger.log_metrics({f"test/{k}": v for k, v in test.items()}, m.state.step)
    summary.update(pinn_summary(m.job))  # a physics-informed member's equation
    if m.error:
        summary["error"] = m.error
    summary["vectorised"] = {"members": size, "member": index}
    return summary


def record_member(m: Member, summary: dict[str, Any]) -> None:
    """Its HParams record and its summary.json, as its run ends (its loggers are closed
    after: a sink may carry summary.json and curves.png, MLflow's)."""
    try:
        m.logger.log_hparams(flat_hparams(m.config), summary["status"])
    except Exception as err:  # never at the cost of summary.json
        log.warning(f"no HParams record: {type(err).__name__}: {err}")
    write_json(m.run_dir / "summary.json", summary)
