"""What a physics-informed run logs beside its loss, and adds to its summary.

At every log point: each loss term of the last step (`train/loss/residual`, `.../boundary`,
`.../initial`, `.../data`), each learnt coefficient (`pde/nu`) and, under optim=adam_lbfgs,
the phase (`optim/lbfgs`: 0 then 1) and the L-BFGS restarts. One host sync a log point.
"""

from __future__ import annotations

from typing import Any

import torch

from dltrain.log import Logger
from dltrain.pinn.loss import PinnLoss
from dltrain.training.hooks import HookList, Hooks, NoHooks
from dltrain.training.state import Job, TrainState


class TermLog(NoHooks):
    def __init__(self, loss: PinnLoss, optimizer: Any, logger: Logger, every: int) -> None:
        self.loss, self.optimizer, self.logger, self.every = loss, optimizer, logger, every

    def step(self, state: TrainState) -> None:
        if state.step % self.every == 0:
            self.logger.log_metrics(self.values(), state.step)

    def values(self) -> dict[str, float]:
        out = term_values(self.loss.last)[0]
        if self.loss.learned is not None:
            out.update({f"pde/{k}": v for k, v in self.loss.learned.floats().items()})
        if hasattr(self.optimizer, "switch_at"):  # optim=adam_lbfgs
            # whether the step just taken was an L-BFGS one
            out["optim/lbfgs"] = float(self.optimizer.taken > self.optimizer.switch_at)
            out["optim/lbfgs_restarts"] = float(self.optimizer.restarts)
        return out


def term_values(last: dict[str, torch.Tensor]) -> list[dict[str, float]]:
    """`train/loss/TERM` of a PinnLoss's last step (`last`), one record per network: one for
    a run's 0-d terms, one per member for a stack's (members,) terms. One host sync."""
    if not last:
        return [{}]
    numbers = torch.stack(list(last.values())).reshape(len(last), -1).T.tolist()
    return [{f"train/loss/{t}": v for t, v in zip(last, row, strict=True)} for row in numbers]


def with_term_log(hooks: Hooks, job: Job, logger: Logger) -> Hooks:
    """A physics-informed job's hooks: the probes' and the term log."""
    loss = job.parts.loss
    if not isinstance(loss, PinnLoss):
        return hooks
    return HookList([hooks, TermLog(loss, job.parts.optimizer, logger, job.settings.log_every)])


def pinn_summary(job: Job) -> dict[str, Any]:
    """summary.json's `pde` (nothing for other tasks): the equation, its coefficients, and
    each learnt one's value beside the truth (and its relative error)."""
    loss, optimizer = job.parts.loss, job.parts.optimizer
    if not isinstance(loss, PinnLoss):
        return {}
    problem = loss.problem
    out: dict[str, Any] = {"equation": problem.equation.name,
                           "coefficients": dict(problem.equation.coefficients)}
    if loss.learned is not None:
        out["learned"] = {
            name: {"value": value, "true": problem.equation.coefficients[name],
                   "guess": problem.guess[name],
                   "rel_error": relative(value, problem.equation.coefficients[name])}
            for name, value in loss.learned.floats().items()}
    if hasattr(optimizer, "switch_at"):
        out["lbfgs"] = {"switch_at": optimizer.switch_at, "restarts": optimizer.restarts}
    return {"pde": out}


def relative(value: float, true: float) -> float:
    """|value - true| / |true| (the absolute error where the truth is 0)."""
    return abs(value - true) / abs(true) if true else abs(value)
