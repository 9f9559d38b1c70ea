"""The physics-informed loss: the weighted sum of the equation's mean squared residual at the
domain points and the squared misfits of the boundary values, the initial values and the
observations (`pde.weights.*`).

Given a training batch (whose points require grad: dltrain.pinn.problem.PinnBatches) it
differentiates the network's output with respect to the points; given points without grad
(evaluation, under inference mode) it is the mean squared error against the reference, the
validation loss of a PINN. Each term of the last training step is kept, detached, for the
log (`train/loss/residual`, ...): read only at log points, so no step waits for the device.
"""

from __future__ import annotations

import torch
from torch import nn

from dltrain.pinn.network import LearnedCoefficients
from dltrain.pinn.pde import Field
from dltrain.pinn.problem import TERMS, Problem


class PinnLoss(nn.Module):
    def __init__(self, problem: Problem, learned: LearnedCoefficients | None) -> None:
        super().__init__()
        self.problem = problem
        self.learned = learned
        self.rows = problem.counts.slices()
        self.fixed = {k: v for k, v in problem.equation.coefficients.items()
                      if k not in problem.learn}
        # the terms that have rows (no initial term for a stationary equation, no data term
        # without observations), with their weights
        sizes = {"residual": problem.counts.domain, "boundary": problem.counts.boundary,
                 "initial": problem.counts.initial, "data": problem.counts.data}
        self.terms = [(t, problem.weights[t]) for t in TERMS if sizes[t]]
        self.last: dict[str, torch.Tensor] = {}

    def coefficients(self) -> dict[str, torch.Tensor | float]:
        return {**self.fixed, **(self.learned.values() if self.learned is not None else {})}

    def forward(self, out: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        u, target = out.reshape(-1), y.reshape(-1)
        if not x.requires_grad:  # the reference on the evaluation grid
            return (u - target).square().mean()
        field = Field(x, u, self.problem.equation.box)
        values: dict[str, torch.Tensor] = {}
        for term, _ in self.terms:
            if term == "residual":
                r = self.problem.equation.residual(field, self.coefficients())
                values[term] = r[self.rows["domain"]].square().mean()
            else:
                rows = self.rows[term]
                values[term] = (u[rows] - target[rows]).square().mean()
        self.last = {t: v.detach() for t, v in values.items()}
        total = torch.zeros((), device=u.device, dtype=u.dtype)
        for term, weight in self.terms:
            total = total + weight * values[term]
        return total
