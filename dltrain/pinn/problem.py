"""A physics-informed run's problem, from its `pde` node: the equation, its points, its
weights, what it learns, and the data a run trains and is scored on.

The training "split" is one draw of collocation points, laid out as Counts says (domain,
boundary, initial, observations), with the values each row must take (0 for the residual).
Validation and test are the reference solution on the evaluation grid (`pde.eval`): the
number PINN papers report is the relative L2 error there.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from dltrain.data.spec import TEST_SEED, Data, DataSpec, Split
from dltrain.errors import ConfigError
from dltrain.pinn import (
    equations,  # noqa: F401  (registers the equations)
    points,
)
from dltrain.pinn.pde import EQUATIONS, Equation
from dltrain.pinn.rules import TERMS


@dataclass(frozen=True)
class Problem:
    equation: Equation
    counts: points.Counts
    sampling: str
    resample_every: int  # steps between draws of the collocation points; 0: one draw
    lbfgs_resample_every: int | None  # ... once L-BFGS steps (None: resample_every)
    weights: dict[str, float]  # TERMS -> weight
    learn: tuple[str, ...]  # coefficients the run fits (an inverse problem)
    guess: dict[str, float]  # their first values
    noise: float  # standard deviation of the observations' noise, in u's units
    grid: tuple[int, ...]  # evaluation grid: points per coordinate

    @property
    def guesses(self) -> tuple[tuple[str, float], ...]:
        return tuple((name, self.guess[name]) for name in self.learn)


def problem(node: Mapping[str, Any]) -> Problem:
    """The problem of a `pde` node (plain values), checked: one sentence for what is wrong."""
    name = str(node["name"])
    if name not in EQUATIONS:
        raise ConfigError(f"pde={name} is not an equation dltrain knows; use one of: "
                          f"{', '.join(sorted(EQUATIONS))}.")
    equation = EQUATIONS[name](node["coefficients"], node["domain"])
    box = equation.box
    learn = tuple(str(c) for c in node["learn"])  # (each one a coefficient: pinn.rules)
    pts = node["points"]
    counts = points.Counts(int(pts["domain"]), int(pts["boundary"]),
                           int(pts["initial"]) if box.time is not None else 0,
                           int(node["observations"]))
    if box.time is None and int(pts["initial"]):
        raise ConfigError(f"pde.points.initial={pts['initial']}: pde={name} has no time "
                          "coordinate, hence no initial line; set pde.points.initial=0.")
    if counts.domain == 0:
        raise ConfigError(f"pde.points.domain=0: pde={name} needs collocation points inside "
                          "its domain to learn its equation; use pde.points.domain=1000 or so.")
    if learn and counts.data == 0:
        raise ConfigError(f"pde.learn=[{', '.join(learn)}] fits coefficients to observations "
                          "of the solution, but pde.observations=0; use pde.observations=2000.")
    grid = tuple(int(node["eval"][n]) for n in box.names)
    lbfgs_every = node.get("lbfgs_resample_every")
    return Problem(equation, counts, str(node["sampling"]), int(node["resample_every"]),
                   None if lbfgs_every is None else int(lbfgs_every),
                   {t: float(node["weights"][t]) for t in TERMS}, learn,
                   {k: float(v) for k, v in node["guess"].items()}, float(node["noise"]), grid)


def conditions(p: Problem, x: torch.Tensor) -> torch.Tensor:
    """The value every collocation row must take: 0 (residual), then the boundary and
    initial values, for a draw of domain + boundary + initial rows (float64)."""
    rows = p.counts.slices()
    y = torch.zeros(x.shape[0], dtype=torch.float64)
    if p.counts.boundary:
        y[rows["boundary"]] = p.equation.boundary(x[rows["boundary"]])
    if p.counts.initial:
        y[rows["initial"]] = p.equation.initial(x[rows["initial"]])
    return y


def observations(p: Problem) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse problem's data: `pde.observations` points of the domain where the
    reference solution is known up to Gaussian noise of std `pde.noise` (float64)."""
    gen = torch.Generator().manual_seed(TEST_SEED)  # the problem's data: the same in every run
    x = points.interior(p.counts.data, p.equation.box, "uniform", gen)
    clean = p.equation.reference(x)
    return x, clean + p.noise * torch.randn(clean.shape, generator=gen, dtype=torch.float64)


def collocation(p: Problem, seed: int, number: int, observed: tuple[torch.Tensor, torch.Tensor]
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw `number`'s training rows (x, target), float64: its collocation points and the
    (fixed) observations."""
    x = points.draw(p.counts, p.equation.box, p.sampling, seed, number)
    return torch.cat([x, observed[0]]), torch.cat([conditions(p, x), observed[1]])


def pinn_data(p: Problem, seed: int, device: torch.device | str) -> Data:
    """Draw 0 of the collocation points as the training split; the reference on the
    evaluation grid as validation and test (the same grid: a PINN has no held-out data,
    its error is measured against the solution everywhere)."""
    observed = observations(p)
    x, y = collocation(p, seed, 0, observed)
    grid = points.grid(p.equation.box, p.grid)
    truth = p.equation.reference(grid)

    def split(a: torch.Tensor, b: torch.Tensor) -> Split:  # float64: see pinn.network
        return Split(a.to(device), b.to(device).reshape(-1, 1))

    evaluation = split(grid, truth)
    spec = DataSpec(name=p.equation.name, task="pinn", kind="vector",
                    input_shape=(p.equation.box.dims,), num_outputs=1, learned=p.guesses)
    return Data(train=split(x, y), val=evaluation, test=evaluation, spec=spec,
                facts={"pde": p.equation.name, "coordinates": list(p.equation.box.names)})


def draw_number(p: Problem, epoch: int, lbfgs_from: int | None) -> int:
    """The draw of collocation points that step `epoch` takes: a new one every
    `resample_every` steps (0: one draw); from step `lbfgs_from` on (where L-BFGS steps, if
    it does) every `lbfgs_resample_every` steps, starting with a fresh draw (0: that one
    throughout). Stochastic steps (Adam) gain from fresh points at every step; L-BFGS builds a
    curvature model of one loss over many steps and needs its points to hold meanwhile."""
    every, later = p.resample_every, p.lbfgs_resample_every
    if later is None or lbfgs_from is None or epoch < lbfgs_from:
        return epoch // every if every else 0
    before = ((lbfgs_from - 1) // every + 1 if every else 1) if lbfgs_from else 0
    return before + ((epoch - lbfgs_from) // later if later else 0)


class PinnBatches:
    """One batch an epoch (a PINN's epoch is one step on all its points): the points of
    draw_number(epoch). Made from the draw's number alone, so a resumed run steps on the same
    points as one that never stopped. `lbfgs_from`: the first step L-BFGS takes, if any."""

    def __init__(self, p: Problem, data: Data, seed: int, lbfgs_from: int | None = None
                 ) -> None:
        self.problem, self.seed, self.lbfgs_from = p, seed, lbfgs_from
        self.first = data.train
        self.observed = (self.first.x[p.counts.total - p.counts.data:].cpu(),
                         self.first.y[p.counts.total - p.counts.data:, 0].cpu())
        self.batch_size = len(self.first)
        self._drawn: tuple[int, Split] = (0, self.first)

    def __len__(self) -> int:
        return 1

    def draw(self, epoch: int) -> Split:
        number = draw_number(self.problem, epoch, self.lbfgs_from)
        if number != self._drawn[0]:
            x, y = collocation(self.problem, self.seed, number, self.observed)
            device = self.first.x.device
            self._drawn = (number, Split(x.to(device), y.to(device).reshape(-1, 1)))
        return self._drawn[1]

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if start >= 1:
            return
        split = self.draw(epoch)
        # a fresh leaf each step: the loss differentiates the network with respect to it
        yield split.x.detach().requires_grad_(True), split.y

