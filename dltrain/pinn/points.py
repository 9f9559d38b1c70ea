"""Collocation points: where a physics-informed network is asked to satisfy its equation.

Points of the interior, of the boundary (the faces of the space coordinates) and of the
initial line (time at its lower end) are drawn in the unit cube by `uniform` (independent
draws), `sobol` (torch.quasirandom's scrambled Sobol sequence) or `lhs` (Latin hypercube: one
point in each of n equal slices of every coordinate), then scaled to the box. Every draw comes
from a generator seeded by (run seed, draw number): the points of any step are known without
replaying the steps before it, so resume stays exact.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dltrain.pinn.pde import Box
from dltrain.runtime import derived_seed


@dataclass(frozen=True)
class Counts:
    """How many points of each kind one draw holds (the train batch's rows, in this order)."""

    domain: int
    boundary: int
    initial: int
    data: int = 0  # observations (inverse problems): fixed, never redrawn

    @property
    def total(self) -> int:
        return self.domain + self.boundary + self.initial + self.data

    def slices(self) -> dict[str, slice]:
        """The rows of each kind in a batch: domain, boundary, initial, data."""
        out, at = {}, 0
        for name in ("domain", "boundary", "initial", "data"):
            n = getattr(self, name)
            out[name] = slice(at, at + n)
            at += n
        return out


def unit_cube(n: int, dims: int, sampling: str, gen: torch.Generator) -> torch.Tensor:
    """n points in [0, 1)^dims, float64."""
    if n == 0:
        return torch.zeros(0, dims, dtype=torch.float64)
    if sampling == "uniform":
        return torch.rand(n, dims, generator=gen, dtype=torch.float64)
    if sampling == "sobol":
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
        engine = torch.quasirandom.SobolEngine(dims, scramble=True, seed=seed)
        return engine.draw(n, dtype=torch.float64)
    if sampling == "lhs":
        # column j: the slices 0..n-1 in a random order, a uniform point within each
        slices = torch.stack([torch.randperm(n, generator=gen) for _ in range(dims)], 1)
        return (slices + torch.rand(n, dims, generator=gen, dtype=torch.float64)) / n
    raise ValueError(f"unknown sampling {sampling!r}")


def scaled(u: torch.Tensor, box: Box) -> torch.Tensor:
    low = torch.tensor(box.low, dtype=torch.float64)
    high = torch.tensor(box.high, dtype=torch.float64)
    return low + u * (high - low)


def interior(n: int, box: Box, sampling: str, gen: torch.Generator) -> torch.Tensor:
    return scaled(unit_cube(n, box.dims, sampling, gen), box)


def boundary(n: int, box: Box, sampling: str, gen: torch.Generator) -> torch.Tensor:
    """n points on the faces of the space coordinates (every face in turn: point i on face
    i mod faces), the other coordinates drawn as `sampling` says."""
    points = interior(n, box, sampling, gen)
    faces = [(axis, end) for axis in box.space for end in (0, 1)]
    for i, (axis, end) in enumerate(faces):
        points[i::len(faces), axis] = box.high[axis] if end else box.low[axis]
    return points


def initial(n: int, box: Box, sampling: str, gen: torch.Generator) -> torch.Tensor:
    """n points of the initial line (t at its lower end)."""
    points = interior(n, box, sampling, gen)
    if box.time is not None:
        points[:, box.time] = box.low[box.time]
    return points


def draw(counts: Counts, box: Box, sampling: str, seed: int, number: int) -> torch.Tensor:
    """Draw `number` of a run seeded with `seed`: (domain + boundary + initial, dims) points,
    float64, in Counts' order (observations, fixed, are not drawn here)."""
    gen = torch.Generator().manual_seed(derived_seed(seed, number))
    return torch.cat([interior(counts.domain, box, sampling, gen),
                      boundary(counts.boundary, box, sampling, gen),
                      initial(counts.initial, box, sampling, gen)])


def grid(box: Box, per_axis: tuple[int, ...]) -> torch.Tensor:
    """A regular grid (ends included) of the box, float64, (prod(per_axis), dims), the first
    coordinate varying slowest."""
    axes = [torch.linspace(lo, hi, n, dtype=torch.float64)
            for lo, hi, n in zip(box.low, box.high, per_axis, strict=True)]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, box.dims)
