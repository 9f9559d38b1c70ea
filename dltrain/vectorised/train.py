"""train_stack(cfgs, run_dirs): runs of one architecture trained at once, as one stacked model.

Every member is built as its own run builds itself (dltrain.run.build_job, after seeding with
its seed), so it starts from the same weights, takes its batches in the order its own
ShuffledBatches gives (`order(epoch)` from its seed) and draws the same dropout masks (from a
copy of the random stream its run would draw them from). One forward, one backward and one
optimiser step then train every member at once; validation, the best weights, early
stopping and divergence are each member's own, decided at the points where its own run
decides them (dltrain.train.loop.fit), so that a member ends as its run alone ends, to float
rounding.

Each member's run directory receives what its run would write, through dltrain's own writers:
.hydra/config.yaml, metrics.jsonl, TensorBoard events with the HParams record, checkpoints
(its weights, its optimiser in torch's own format, its schedule and random state: `dltrain
resume` and `dltrain eval` take them as any run's), train.log and summary.json.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from rich import get_console

from dltrain.config import validate
from dltrain.data import Data, build_data
from dltrain.data.batches import ShuffledBatches
from dltrain.errors import ConfigError
from dltrain.io import write_json
from dltrain.log import Logger, Loggers, NullLogger
from dltrain.log.console import LineLogger, fmt
from dltrain.models.summary import layer_table
from dltrain.optim import penalised_weights, steps_per_batch
from dltrain.probes import build_probes
from dltrain.run import (
    EXIT_CODES,
    Checkpoints,
    Job,
    RunResult,
    build_job,
    describe_job,
    file_loggers,
    flat_hparams,
    progress,
    run_options,
    write_config,
)
from dltrain.runtime import (
    deterministic,
    environment,
    flush_denormals,
    resolve_device,
    seed_everything,
)
from dltrain.train.checkpoint import rng_state
from dltrain.train.hooks import NO_HOOKS, Hooks
from dltrain.train.loop import Window, first_nonfinite
from dltrain.train.signals import StopRequest
from dltrain.train.state import Settings, TrainState
from dltrain.vectorised.model import (
    StackedData,
    StackedModel,
    Unstackable,
    batch_slices,
    check_layers,
    epoch_orders,
)
from dltrain.vectorised.optim import (
    Layout,
    StackedOptimizer,
    load_member_state,
    stacked_optimizer,
)

log = logging.getLogger("dltrain")


@dataclass
class Member:
    """One run of the stack: its config and directory, its own built job, where it stands."""

    cfg: DictConfig
    run_dir: Path
    job: Job
    rng: dict[str, Any]  # python, numpy and torch random states, as its run has them
    generator: torch.Generator  # its dropout masks: the torch stream its run draws from
    state: TrainState = field(default_factory=TrainState)
    logger: Logger = field(default_factory=NullLogger)
    checkpoints: Checkpoints | None = None
    hooks: Hooks = NO_HOOKS  # its probes; a stack calls only their `end` (config.PROBES)
    # Where it stood at its last validation (or stop): its run's last.pt, not yet written;
    # and its best validation so far (the weights are the stack's `best` row), if not written.
    snapshot: _Snapshot | None = None
    best_state: TrainState | None = None
    status: str = "running"  # running | completed | diverged | interrupted | failed
    error: str | None = None

    @property
    def running(self) -> bool:
        return self.status == "running"


def _data_key(cfg: DictConfig) -> str:
    return json.dumps(OmegaConf.to_container(cfg.data, resolve=True), sort_keys=True)


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
        seed_everything(int(cfg.trainer.seed))
        key = _data_key(cfg)
        try:
            if key not in datasets:
                datasets[key] = len(data)
                data.append(build_data(cfg.data, device))
            job = build_job(cfg, device, data=data[datasets[key]])
        except ConfigError as err:  # each job says so itself, when it runs alone
            raise Unstackable(f"building the stack failed ({err})") from None
        rng = rng_state()
        generator = torch.Generator()
        generator.set_state(rng["torch"])
        which.append(datasets[key])
        members.append(Member(cfg, Path(run_dir), job, rng, generator))
    first = members[0].job
    if type(first.batches) is not ShuffledBatches:
        kind = type(first.batches).__name__
        raise Unstackable(f"data={first.spec.name} trains on {kind}, not on shuffled index "
                          "slices of one split; only those are stacked")
    check_layers(first.parts.model, str(members[0].cfg.model.name))
    return members, data, which


@dataclass(frozen=True)
class _Snapshot:
    """What a member's last.pt holds, taken when its run would write it: its training state,
    the stack's parameters and optimiser state (shared by the members taken at that moment),
    its schedule and its random stream."""

    state: TrainState
    flat: torch.Tensor
    buffers: dict[str, torch.Tensor]
    optimizer: StackedOptimizer
    scheduler: Any
    generator: torch.Tensor


def _load(member: Member, layout: Layout, row: torch.Tensor,
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


def _weights(member: Member, layout: Layout, row: torch.Tensor,
             buffers: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The member's model's state_dict with the parameters of `row` and its rows of the
    stack's `buffers` (copies)."""
    model = _load(member, layout, row, buffers)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _row(buffers: dict[str, torch.Tensor], i: int) -> dict[str, torch.Tensor]:
    return {name: b[i] for name, b in buffers.items()}


class _Stack:
    """The training of the stack: the loop of dltrain.train.loop.fit, for every member."""

    def __init__(self, members: list[Member], data: list[Data], which: list[int],
                 device: torch.device, stop: StopRequest, save_every_s: float = 60.0) -> None:
        self.members = members
        self.device = device
        self.stop = stop
        first = members[0].job
        self.settings: Settings = first.settings
        self.task = first.spec.task
        self.batches: ShuffledBatches = first.batches  # type: ignore[assignment]
        penalised = {id(w) for w in penalised_weights(first.parts.model)}
        self.model = StackedModel([m.job.parts.model for m in members], first.parts.loss,
                                  [n for n, p in first.parts.model.named_parameters()
                                   if id(p) in penalised], device)
        self.data = StackedData.of([d.train for d in data], [d.val for d in data],
                                   [d.test for d in data], which)
        self.optimizer = stacked_optimizer([m.job.parts.optimizer for m in members],
                                           [m.job.parts.model for m in members],
                                           self.model.layout, device)
        self.best, self.best_buffers = self.model.weights()  # each member's best so far
        l1 = [float(m.cfg.penalty.get("l1", 0.0)) for m in members]
        l2 = [float(m.cfg.penalty.get("l2", 0.0)) for m in members]
        self.l1 = torch.tensor(l1, device=device) if any(c > 0 for c in l1) else None
        self.l2 = torch.tensor(l2, device=device) if any(c > 0 for c in l2) else None
        self.schedulers = [m.job.parts.scheduler for m in members]
        self.step_schedule = steps_per_batch(self.schedulers[0])
        self.save_every_s = save_every_s
        self.flushed = time.perf_counter()

    # -- one step ------------------------------------------------------------------------

    def _clip(self, grads: torch.Tensor) -> None:
        s = self.settings
        if s.clip_norm is not None:  # torch.nn.utils.clip_grad_norm_, per member
            norms = torch.stack([grads[:, sl].norm(dim=1) for sl in self.model.layout.slices()],
                                dim=1)
            total = norms.norm(dim=1, keepdim=True)
            grads.mul_(torch.clamp(s.clip_norm / (total + 1e-6), max=1.0))
        elif s.clip_value is not None:
            grads.clamp_(-s.clip_value, s.clip_value)

    def step(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step of every member on its batch idx[i]; (losses, x)."""
        x, y = self.data.batch(idx)
        masks = self.model.masks([m.generator for m in self.members])
        model = self.model
        losses = model.gradients(x, y, masks, self.l1, self.l2)
        with torch.no_grad():
            self._clip(model.grad)
            self.optimizer.step(model.flat, model.grad)
        if self.step_schedule:
            for scheduler in self.schedulers:
                scheduler.step()
            self.optimizer.refresh()
        return losses, x

    # -- log points, validation, checkpoints ---------------------------------------------

    def running(self) -> list[tuple[int, Member]]:
        return [(i, m) for i, m in enumerate(self.members) if m.running]

    def log_window(self, window: Window, x: torch.Tensor) -> Window:
        """Read the window's losses (one host sync for the stack) and log each member's."""
        if not window.losses:
            return window
        values = torch.stack(window.losses).T.tolist()  # (members, steps)
        now = time.perf_counter()
        elapsed = now - window.started
        for i, member in self.running():
            state = member.state
            state.train_s += elapsed
            state.samples += window.samples
            bad = next((v for v in values[i] if not math.isfinite(v)), None)
            if bad is not None:
                self._diverged(i, member, values[i], x[i])
                continue
            member.logger.log_metrics({
                "train/loss": sum(values[i]) / len(values[i]),
                "train/lr": member.job.parts.optimizer.param_groups[0]["lr"],
                "perf/samples_per_s": window.samples / max(elapsed, 1e-9),
            }, state.step)
        return Window(started=now)

    def _diverged(self, i: int, member: Member, values: list[float], x: torch.Tensor) -> None:
        """As its run: status diverged, the step and the first non-finite layer; the last
        good checkpoint stays (it is not saved again). Its row of the stack goes on being
        computed, unread: members do not mix, so its non-finite numbers reach no other."""
        at = next(k for k, v in enumerate(values) if not math.isfinite(v))
        step = member.state.step - len(values) + at + 1
        rows = self.model.layout.row(self.model.flat[i])
        with torch.no_grad():
            for name, p in member.job.parts.model.named_parameters():
                p.copy_(rows[name])
        where = first_nonfinite(member.job.parts.model, x)
        member.status = "diverged"
        member.error = (f"The training loss became {values[at]} at step {step}"
                        f"{f'; first non-finite: {where}' if where else ''}.")
        log.error(f"{member.run_dir.name}: {member.error}")
        self.write(i, member)  # its checkpoints of the last validation, as its run left them

    # Checkpoints. A run writes last.pt (and best.pt when it improved) after every
    # validation; a stack of many small runs would spend longer on that than on training. So
    # the stack keeps what each member's files would hold (a _Snapshot, the best weights)
    # and writes them when the member stops, on a stop request, every `save_every_s`
    # seconds, and at the end: the files are then what its run's files are at that point.

    def snapshot(self) -> Callable[[Member], None]:
        """A function that records where a member stands now (its state as it is when
        called); the stack's parameters and optimiser state are copied once for all."""
        (flat, buffers), optimizer = self.model.weights(), self.optimizer.snapshot()
        # without dropout no member draws from its stream after building
        drawn = bool(self.model.dropout) or not self.model.dropout_found

        def take(member: Member) -> None:
            scheduler = member.job.parts.scheduler
            member.snapshot = _Snapshot(
                copy.copy(member.state), flat, buffers, optimizer,
                copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None,
                member.generator.get_state() if drawn else member.rng["torch"])
        return take

    def write(self, i: int, member: Member) -> None:
        """Write member i's checkpoints that are not on disk yet."""
        assert member.checkpoints is not None
        snap, layout = member.snapshot, self.model.layout
        if member.best_state is not None:
            _, best = member.checkpoints.compose(
                member.best_state,
                _weights(member, layout, self.best[i], _row(self.best_buffers, i)))
            member.checkpoints.write(None, best)
            member.best_state = None
        if snap is not None:
            parts = member.job.parts
            weights = _weights(member, layout, snap.flat[i], _row(snap.buffers, i))
            load_member_state(parts.optimizer, parts.model, snap.optimizer.member_state(i))
            last, _ = member.checkpoints.compose(
                snap.state, weights, parts.optimizer.state_dict(), snap.scheduler, None,
                {**member.rng, "torch": snap.generator})
            member.checkpoints.write(last, None)
            member.snapshot = None

    def flush(self, every_s: float = 0.0) -> None:
        """Write every member's pending checkpoints, if `every_s` seconds have passed since
        the last time."""
        now = time.perf_counter()
        if now - self.flushed >= every_s:
            for i, member in enumerate(self.members):
                self.write(i, member)
            self.flushed = now

    def validate(self, steps_per_epoch: int) -> None:
        """Every running member's validation, best weights, schedule, early stopping, save:
        what fit() does after an epoch."""
        settings, metric = self.settings, self.settings.monitor.split("/", 1)[1]
        results = self.model.evaluate(self.model.flat, self.model.buffers, self.data.val,
                                      self.data.which_list, self.task,
                                      settings.eval_batch_size)
        running = self.running()
        scores = [results[i][metric] for i, _ in running]
        state = running[0][1].state
        of = f"/{settings.max_epochs}"
        log.info(f"epoch {fmt(state.epoch + state.batch / steps_per_epoch)}{of}  "
                 f"step {state.step}  {len(running)} of {len(self.members)} members training  "
                 f"{settings.monitor} mean {fmt(sum(scores) / len(scores))} "
                 f"(min {fmt(min(scores))}, max {fmt(max(scores))})")
        take = self.snapshot()
        for i, member in running:
            state, val = member.state, results[i]
            state.last_val = val
            epoch = state.epoch + state.batch / steps_per_epoch
            member.logger.log_metrics({"epoch": round(epoch, 3),
                                       **{f"val/{k}": v for k, v in val.items()}}, state.step)
            if self.schedulers[i] is not None and not self.step_schedule:
                self.schedulers[i].step(val["loss"])  # plateau: on the validation loss
            value = val[metric]
            is_best = state.improved(value, settings.mode)
            if is_best:
                state.best_value, state.best_step, state.best_val = value, state.step, val
                self.best[i] = self.model.flat[i]
                for name, b in self.model.buffers.items():
                    self.best_buffers[name][i] = b[i]
            stop_early = state.note_progress(value, settings)
            take(member)  # what its run saves here: last.pt, and best.pt if is_best
            if is_best:
                member.best_state = member.snapshot.state  # type: ignore[union-attr]
            if stop_early:
                state.stopped_early = True
                member.status = "completed"
                self.end(i, member)
                self.write(i, member)
        if not self.step_schedule and self.schedulers[0] is not None:
            self.optimizer.refresh()

    # -- the loop ------------------------------------------------------------------------

    def catch_up(self, clock: TrainState) -> None:
        """Running members are where the stack is (their counts are kept between log points
        by the stack's own clock, not member by member every step)."""
        for _, member in self.running():
            member.state.step, member.state.batch = clock.step, clock.batch
            member.state.epoch = clock.epoch

    def fit(self) -> None:
        """Train until max_epochs / max_steps, or until no member runs on; a stop request
        ends every running member as interrupted (checkpoint saved), as it ends a run."""
        with warnings.catch_warnings():
            # the gradients land in views of `grad` by design (see StackedModel), and the
            # members' own optimisers never step: the stack steps for them
            warnings.filterwarnings("ignore", message="grad and param do not obey")
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler")
            self._fit()
        for i, member in self.running():
            member.status = "completed"
            self.end(i, member)

    def end(self, i: int, member: Member) -> None:
        """A completed member's probes look at its final weights, as its run's `fit` lets
        them look after the last step (before the test)."""
        if member.hooks is not NO_HOOKS:
            _load(member, self.model.layout, self.model.flat[i], _row(self.model.buffers, i))
            member.hooks.end(member.state)

    def _fit(self) -> None:
        settings, b = self.settings, self.batches.batch_size
        max_steps = settings.max_steps or math.inf
        steps_per_epoch = len(self.batches)
        orders = [m.job.batches.order for m in self.members]  # type: ignore[attr-defined]
        clock = TrainState()  # the stack's count: every running member is at this point
        # the window runs across epochs, read as fit() reads its own (see there)
        window, x = Window(), None
        while clock.epoch < settings.max_epochs and clock.step < max_steps and self.running():
            if not window.losses:
                window = Window()
            perms = epoch_orders(orders, clock.epoch)
            for idx in batch_slices(perms, b, clock.batch, steps_per_epoch):
                if not self.model.dropout_found:
                    self.model.find_dropout_shapes(self.data.batch(idx)[0][0])
                losses, x = self.step(idx)
                window.losses.append(losses)
                window.samples += b
                clock.batch += 1
                clock.step += 1
                if clock.step % settings.log_every == 0:
                    self.catch_up(clock)
                    window = self.log_window(window, x)
                    if not self.running():
                        break
                if (self.stop.requested or clock.step >= max_steps
                        or clock.batch >= steps_per_epoch):
                    break
            if clock.batch >= steps_per_epoch:
                clock.epoch += 1
                clock.batch = 0
            self.catch_up(clock)
            finished = clock.epoch >= settings.max_epochs or clock.step >= max_steps
            due = finished or (clock.batch == 0 and clock.epoch % settings.val_every == 0)
            if x is not None and (due or self.stop.requested):
                window = self.log_window(window, x)
            if self.stop.requested:
                take = self.snapshot()
                for _, member in self.running():
                    take(member)
                    member.status = "interrupted"
                return
            if self.running() and due:
                self.validate(steps_per_epoch)
                self.flush(self.save_every_s)

    def test(self) -> list[dict[str, float]]:
        """Every member's test metrics with its best weights (its run tests best.pt)."""
        return self.model.evaluate(self.best, self.best_buffers, self.data.test,
                                   self.data.which_list, self.task,
                                   self.settings.eval_batch_size)


def _open(members: Sequence[Member], index_of: int) -> None:
    """Run directories, configs, loggers and checkpoint writers of the members."""
    first = members[0]
    params = sum(p.numel() for p in first.job.parts.model.parameters())
    for i, m in enumerate(members):
        m.run_dir.mkdir(parents=True, exist_ok=True)
        write_config(m.cfg, m.run_dir, False)
        lines = LineLogger(m.run_dir / "train.log", int(m.cfg.trainer.max_epochs))
        lines.line(describe_job(m.job, params, m.cfg))
        lines.line(f"run directory: {m.run_dir}")
        lines.line(f"trained by the vectorised launcher as member {i + 1} of a stack of "
                   f"{len(members)}" + (f" (stack {index_of})" if index_of else ""))
        m.logger = Loggers([lines, *file_loggers(m.cfg, m.run_dir)])
        m.checkpoints = Checkpoints(m.job, m.cfg, m.run_dir)
        m.hooks = build_probes(m.cfg, m.job, m.logger, m.run_dir, True)


def train_stack(cfgs: Sequence[DictConfig], run_dirs: Sequence[Path | str],
                stop: StopRequest | None = None, index_of: int = 0,
                save_every_s: float = 60.0) -> list[RunResult]:
    """Train the configs (jobs that differ only in stackable values) as one stacked model,
    each into its run directory; the results in their order.

    Checkpoints are written when the stack ends (however it ends), on a stop request, and
    after a validation when `save_every_s` seconds have passed since they were last written;
    their content is what each run alone would have written by then.
    Raises Unstackable, before anything is written, if they cannot train as one stack.
    """
    started = time.perf_counter()
    stop = stop or StopRequest()
    first = cfgs[0]
    try:
        for cfg in cfgs:
            validate(cfg)
        device = resolve_device(first.trainer.device)
    except ConfigError as err:  # each job says so itself, when it runs alone
        raise Unstackable(f"the config is refused ({err})") from None
    if first.trainer.threads:
        torch.set_num_threads(int(first.trainer.threads))
    with (stop.on_signals(), deterministic(bool(first.trainer.deterministic)),
          flush_denormals(device)):
        members, data, which = build_members(cfgs, [Path(d) for d in run_dirs], device)
        stack = _Stack(members, data, which, device, stop, save_every_s)
        job = members[0].job
        params = sum(p.numel() for p in job.parts.model.parameters())
        log.info(f"a stack of {len(members)}: {describe_job(job, params, first)} each")
        get_console().print(layer_table(job.parts.model, job.spec))
        _open(members, index_of)
        tests: list[dict[str, float]] = [{} for _ in members]
        try:
            stack.fit()
            if any(m.status == "completed" for m in members):
                tests = stack.test()
        except KeyboardInterrupt:
            for m in members:
                if m.status != "diverged":
                    m.status, m.error = "interrupted", "stopped at once by a second interrupt"
        except Exception as err:  # recorded in every member, as a run records its failure
            log.error("training the stack failed:\n%s", traceback.format_exc())
            for m in members:
                if m.status != "diverged":  # (a diverged member ended on its own)
                    m.status, m.error = "failed", f"{type(err).__name__}: {err}"
        finally:
            stack.flush()
    env = environment()
    wall = round(time.perf_counter() - started, 3)
    results = []
    for i, m in enumerate(members):
        summary = _summary(m, params, device, tests[i], len(members), i)
        try:
            m.logger.log_hparams(flat_hparams(m.cfg), summary["status"])
        except Exception as err:  # never at the cost of summary.json
            log.warning(f"no HParams record: {type(err).__name__}: {err}")
        m.logger.close()
        summary.update(wall_s=wall, env=env)
        write_json(m.run_dir / "summary.json", summary)
        results.append(RunResult(summary["status"], EXIT_CODES[summary["status"]], summary))
    return results


def _summary(m: Member, params: int, device: torch.device, test: dict[str, float],
             size: int, index: int) -> dict[str, Any]:
    """summary.json of a member: the keys its own run writes, plus where in the stack it was."""
    summary: dict[str, Any] = {"status": m.status, "options": run_options(m.cfg),
                               "task": m.job.spec.task, "params": params, "device": str(device)}
    if m.status in ("completed", "interrupted"):
        summary.update(progress(m.state, m.job.settings), status=m.status)
    if m.status == "completed":
        summary["test"] = test
        m.logger.log_metrics({f"test/{k}": v for k, v in test.items()}, m.state.step)
    if m.error:
        summary["error"] = m.error
    summary["vectorised"] = {"members": size, "member": index}
    return summary
