"""The physics-informed loss: the weighted sum of the equation's mean squared residual at the
domain points and the squared misfits of the boundary values, the initial values and the
observations (`pde.weights.*`).

Given a training batch (whose points require grad: dltrain.pinn.problem.PinnBatches) it
differentiates the network's output with respect to the points; given points without grad
(evaluation, under inference mode) it is the mean squared error against the reference, the
validation loss of a PINN. Each term of the last training step is kept, detached, for the
log (`train/loss/residual`, ...): read only at log points, so no step waits for the device.

Points with leading axes, (members, N, dims), are the networks of a vectorised stack: each
term is then a mean per member, (members,), and each weight a number or a (members,) tensor
of each member's own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from dltrain.pinn.network import LearnedCoefficients
from dltrain.pinn.pde import Field
from dltrain.pinn.problem import TERMS, Problem


class PinnLoss(nn.Module):
    def __init__(self, problem: Problem, learned: LearnedCoefficients | None,
                 weights: Mapping[str, float | torch.Tensor] | None = None) -> None:
        """`weights`: each term's weight where not the problem's own (a stack's, per member)."""
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
        chosen = problem.weights if weights is None else weights
        self.terms = [(t, chosen[t]) for t in TERMS if sizes[t]]
        self.last: dict[str, torch.Tensor] = {}

    def coefficients(self) -> dict[str, torch.Tensor | float]:
        return {**self.fixed, **(self.learned.values() if self.learned is not None else {})}

    def forward(self, out: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]  # (N,), or (members, N)
        u, target = out.reshape(lead), y.reshape(lead)
        if not x.requires_grad:  # the reference on the evaluation grid
            return (u - target).square().mean()
        field = Field(x, u, self.problem.equation.box)
        values: dict[str, torch.Tensor] = {}
        for term, _ in self.terms:
            if term == "residual":
                r = self.problem.equation.residual(field, self.coefficients())
                values[term] = r[..., self.rows["domain"]].square().mean(-1)
            else:
                rows = self.rows[term]
                values[term] = (u[..., rows] - target[..., rows]).square().mean(-1)
        self.last = {t: v.detach() for t, v in values.items()}
        total = torch.zeros(lead[:-1], device=u.device, dtype=u.dtype)
        for term, weight in self.terms:
            total = total + weight * values[term]
        return total


def stacked_loss(losses: Sequence[PinnLoss], device: torch.device) -> PinnLoss:
    """The loss of a vectorised stack of `losses`' networks: their problem (the members of a
    stack share everything but their terms' weights; none learns a coefficient), each
    member's weights as a (members,) tensor."""
    weights = {t: torch.tensor([float(loss.problem.weights[t]) for loss in losses],
                               device=device) for t in TERMS}
    return PinnLoss(losses[0].problem, None, weights)
