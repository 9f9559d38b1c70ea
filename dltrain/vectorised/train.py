"""train_stack(cfgs, run_dirs): runs of one architecture trained at once, as one stacked model.

Every member is built as its own run builds itself (dltrain.job.build_job, after seeding with
its seed), so it starts from the same weights, takes its batches in the order its own
ShuffledBatches gives (`order(epoch)` from its seed) and draws the same dropout masks (from a
copy of the random stream its run would draw them from). One forward, one backward and one
optimiser step then train every member at once; validation, the best weights, early
stopping and divergence are each member's own, decided at the points where its own run
decides them (dltrain.training.loop.fit), so that a member ends as its run alone ends, to float
rounding.

Each member's run directory receives what its run would write, through dltrain's own writers:
.hydra/config.yaml, metrics.jsonl, TensorBoard events with the HParams record, checkpoints
(its weights, its optimiser in torch's own format, its schedule and random state: `dltrain
resume` and `dltrain eval` take them as any run's), train.log and summary.json.
"""

from __future__ import annotations

import logging
import time
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from omegaconf import DictConfig
from rich import get_console

from dltrain.config import validate
from dltrain.data import Data
from dltrain.data.batches import ShuffledBatches
from dltrain.errors import ConfigError
from dltrain.job import describe_job
from dltrain.log.console import fmt
from dltrain.losses import takes_inputs
from dltrain.models.summary import layer_table
from dltrain.optim import penalised_weights, steps_per_batch
from dltrain.pinn.loss import stacked_loss
from dltrain.pinn.problem import PinnBatches
from dltrain.pinn.report import term_values
from dltrain.results import RunResult
from dltrain.rundir import start_up
from dltrain.runtime import deterministic, environment, flush_denormals, resolve_device
from dltrain.training.decisions import (
    divergence,
    end_epoch,
    finished,
    first_nonfinite,
    judge,
    val_record,
    validation_due,
)
from dltrain.training.hooks import NO_HOOKS
from dltrain.training.loop import Window, first_nonfinite_layer
from dltrain.training.signals import StopRequest
from dltrain.training.state import Settings, TrainState
from dltrain.vectorised.data import StackedData, StackedPoints, member_scale
from dltrain.vectorised.members import (
    Member,
    buffer_row,
    build_members,
    load_row,
    member_summary,
    open_members,
    record_member,
)
from dltrain.vectorised.model import StackedModel, Unstackable
from dltrain.vectorised.optim import clip_rows, stacked_optimizer
from dltrain.vectorised.saving import MemberFiles

log = logging.getLogger("dltrain")


class _Stack:
    """The training of the stack: the loop of dltrain.training.loop.fit, for every member."""

    def __init__(self, members: list[Member], data: list[Data], which: list[int],
                 device: torch.device, stop: StopRequest, save_every_s: float = 60.0) -> None:
        self.members = members
        self.device = device
        self.stop = stop
        first = members[0].job
        self.settings: Settings = first.settings
        self.task = first.spec.task
        self.batches: ShuffledBatches | PinnBatches = first.batches  # type: ignore[assignment]
        self.data: StackedData | StackedPoints
        loss = first.parts.loss
        if isinstance(self.batches, PinnBatches):  # physics-informed: each member's points
            self.data = StackedPoints.of([m.job.batches for m in members],  # type: ignore[misc]
                                         data[0].val, data[0].test)
            loss = stacked_loss([m.job.parts.loss for m in members], device)  # type: ignore[misc]
        else:
            self.data = StackedData.of(
                [d.train for d in data], [d.val for d in data], [d.test for d in data], which,
                [m.job.batches.order for m in members],  # type: ignore[attr-defined]
                self.batches.batch_size, len(self.batches))
        # a loss that differentiates the networks by their inputs (physics-informed)
        self.by_inputs = takes_inputs(loss)
        penalised = {id(w) for w in penalised_weights(first.parts.model)}
        self.model = StackedModel([m.job.parts.model for m in members], loss,
                                  [n for n, p in first.parts.model.named_parameters()
                                   if id(p) in penalised], device)
        self.scale = member_scale([d.target_scale for d in data], which)
        self.optimizer = stacked_optimizer([m.job.parts.optimizer for m in members],
                                           [m.job.parts.model for m in members],
                                           self.model.layout, device)
        l1 = [float(m.config["penalty"]["l1"]) for m in members]
        l2 = [float(m.config["penalty"]["l2"]) for m in members]
        self.l1 = torch.tensor(l1, device=device) if any(c > 0 for c in l1) else None
        self.l2 = torch.tensor(l2, device=device) if any(c > 0 for c in l2) else None
        self.schedulers = [m.job.parts.scheduler for m in members]
        self.step_schedule = steps_per_batch(self.schedulers[0])
        self.files = MemberFiles(self.model, self.optimizer, members, save_every_s)

    # -- one step ------------------------------------------------------------------------

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimiser step of every member on its batch (x[i], y[i]); the losses."""
        masks = self.model.masks([m.generator for m in self.members])
        model = self.model
        gradients = model.input_gradients if self.by_inputs else model.gradients
        losses = gradients(x, y, masks, self.l1, self.l2)
        with torch.no_grad():
            clip_rows(model.grad, self.model.layout, self.settings.clip_norm,
                      self.settings.clip_value)
            self.optimizer.step(model.flat, model.grad)
        if self.step_schedule:
            for scheduler in self.schedulers:
                scheduler.step()
            self.optimizer.refresh()
        return losses

    # -- log points, validation, checkpoints ---------------------------------------------

    def running(self) -> list[tuple[int, Member]]:
        return [(i, m) for i, m in enumerate(self.members) if m.running]

    def log_terms(self) -> None:
        """Each physics-informed member's loss terms of the step just taken, as its run's
        term log (dltrain.pinn.report) logs them at a log point."""
        last = getattr(self.model.loss, "last", None)
        if last:
            records = term_values(last)
            for i, member in self.running():
                member.logger.log_metrics(records[i], member.state.step)

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
            bad = first_nonfinite(values[i], state.step)
            if bad is not None:
                self._diverged(i, member, *bad, x[i])
                continue
            member.logger.log_metrics({
                "train/loss": sum(values[i]) / len(values[i]),
                "train/lr": member.job.parts.optimizer.param_groups[0]["lr"],
                "perf/samples_per_s": window.samples / max(elapsed, 1e-9),
            }, state.step)
        return Window(started=now)

    def _diverged(self, i: int, member: Member, step: int, value: float, x: torch.Tensor
                  ) -> None:
        """As its run: status diverged, the step and the first non-finite layer; the last
        good checkpoint stays (it is not saved again). Its row of the stack goes on being
        computed, unread: members do not mix, so its non-finite numbers reach no other."""
        model = load_row(member, self.model.layout, self.model.flat[i],
                         buffer_row(self.model.buffers, i))
        member.status = "diverged"
        member.error = divergence(step, value, first_nonfinite_layer(model, x))
        log.error(f"{member.run_dir.name}: {member.error}")
        self.files.write(i, member)  # its checkpoints of the last validation, as its run left them

    def validate(self, steps_per_epoch: int) -> None:
        """Every running member's validation, best weights, schedule, early stopping, save:
        what fit() does after an epoch."""
        settings, metric = self.settings, self.settings.monitor.split("/", 1)[1]
        results = self.model.evaluate(self.model.flat, self.model.buffers, self.data.val,
                                      self.data.which_list, self.task,
                                      settings.eval_batch_size, self.scale)
        running = self.running()
        scores = [results[i][metric] for i, _ in running]
        state = running[0][1].state
        of = f"/{settings.max_epochs}"
        log.info(f"epoch {fmt(state.epoch + state.batch / steps_per_epoch)}{of}  "
                 f"step {state.step}  {len(running)} of {len(self.members)} members training  "
                 f"{settings.monitor} mean {fmt(sum(scores) / len(scores))} "
                 f"(min {fmt(min(scores))}, max {fmt(max(scores))})")
        take = self.files.snapshot()
        for i, member in running:
            state, val = member.state, results[i]
            member.logger.log_metrics(val_record(state, val, steps_per_epoch), state.step)
            if self.schedulers[i] is not None and not self.step_schedule:
                self.schedulers[i].step(val["loss"])  # plateau: on the validation loss
            verdict = judge(state, val, settings)
            if verdict.is_best:
                self.files.keep_best(i)
            take(member)  # what its run saves here: last.pt, and best.pt if is_best
            if verdict.is_best:
                member.best_state = member.snapshot.state  # type: ignore[union-attr]
            if verdict.stop_early:
                member.status = "completed"
                self.end(i, member)
                self.files.write(i, member)
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
            load_row(member, self.model.layout, self.model.flat[i],
                     buffer_row(self.model.buffers, i))
            member.hooks.end(member.state)

    def _fit(self) -> None:
        settings, b = self.settings, self.data.batch_size
        steps_per_epoch = len(self.batches)
        clock = TrainState()  # the stack's count: every running member is at this point
        # the window runs across epochs, read as fit() reads its own (see there)
        window, x = Window(), None
        while not finished(clock, settings) and self.running():
            if not window.losses:
                window = Window()
            for x, y in self.data.epoch(clock.epoch, clock.batch):
                if not self.model.dropout_found:
                    self.model.find_dropout_shapes(x[0])
                window.losses.append(self.step(x, y))
                window.samples += b
                clock.batch += 1
                clock.step += 1
                if clock.step % settings.log_every == 0:
                    self.catch_up(clock)
                    self.log_terms()
                    window = self.log_window(window, x)
                    if not self.running():
                        break
                if self.stop.requested or finished(clock, settings) \
                        or clock.batch >= steps_per_epoch:
                    break
            end_epoch(clock, steps_per_epoch)
            self.catch_up(clock)
            due = validation_due(clock, settings)
            if x is not None and (due or self.stop.requested):
                window = self.log_window(window, x)
            if self.stop.requested:
                take = self.files.snapshot()
                for _, member in self.running():
                    take(member)
                    member.status = "interrupted"
                return
            if self.running() and due:
                self.validate(steps_per_epoch)
                self.files.flush_due()

    def test(self) -> list[dict[str, float]]:
        """Every member's test metrics with its best weights (its run tests best.pt)."""
        return self.model.evaluate(self.files.best, self.files.best_buffers, self.data.test,
                                   self.data.which_list, self.task,
                                   self.settings.eval_batch_size, self.scale)


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
    startup = start_up()  # outside wall_s, as a run alone has it (summary.json's startup_s)
    started = time.perf_counter()
    stop = stop or StopRequest.current()  # the command's own, installed by main()
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
        name = str(members[0].config["model"]["name"])
        log.info(f"a stack of {len(members)}: {describe_job(job, params, name)} each")
        get_console().print(layer_table(job.parts.model, job.spec))
        pictures = open_members(members, index_of)
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
            stack.files.flush()
    env = environment()
    wall = round(time.perf_counter() - started, 3)
    results = []
    for i, m in enumerate(members):
        summary = member_summary(m, params, device, tests[i], len(members), i)
        record_member(m, {**summary, "startup_s": startup, "wall_s": wall, "env": env})
        results.append(RunResult.of(summary))
    try:  # every member's curves.png, after its summary.json, before its sinks close
        pictures.draw()
    except Exception as err:  # a picture is a view of a run, never the loss of its files
        log.warning(f"no curves.png for the stack: {type(err).__name__}: {err}")
    finally:
        for m in members:
            m.logger.close()
    return results


