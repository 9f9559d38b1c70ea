"""The solvers behind data=darcy and data=burgers_operator against exact solutions."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from dltrain.data.operators import burgers, darcy


def poisson_series(s: int, terms: int = 151) -> torch.Tensor:
    """−Δu = 1 on the unit square, u = 0 on its boundary, at the cell centres of an s x s
    grid: u = Σ_{m,n odd} 16 / (π⁴ m n (m² + n²)) sin(mπx) sin(nπy)."""
    c = (torch.arange(s, dtype=torch.float64) + 0.5) / s
    odd = torch.arange(1, terms, 2, dtype=torch.float64)
    sines = torch.sin(math.pi * odd[:, None] * c[None, :])  # (K, s)
    coeff = 16 / (math.pi**4 * odd[:, None] * odd[None, :] * (odd[:, None]**2 + odd[None, :]**2))
    return sines.T @ coeff @ sines


@pytest.mark.parametrize("a", [1.0, 3.0])
def test_darcy_with_constant_permeability_is_the_poisson_solution(a):
    errors = []
    for s in (16, 32, 64):
        u = darcy.solve(torch.full((1, s, s), a, dtype=torch.float64))[0]
        exact = poisson_series(s) / a  # −∇·(a∇u) = 1  <=>  −Δu = 1/a
        errors.append(float((u - exact).norm() / exact.norm()))
    assert errors[-1] < 1e-3
    # second order: each halving of the cell divides the error by about four
    for coarse, fine in pairwise(errors):
        assert 3.5 < coarse / fine < 4.5, errors


def test_darcy_operator_is_symmetric_and_solved_across_jumps():
    # two layers, a = 12 and 3, and the same turned a quarter: conjugate gradients need a
    # symmetric positive definite operator, and the solve must satisfy it to its tolerance
    s = 16
    a = torch.full((2, s, s), 3.0, dtype=torch.float64)
    a[:, :, : s // 2] = 12.0
    a[1] = a[0].T.clone()
    cx, cy = darcy.face_coefficients(a)
    gen = torch.Generator().manual_seed(0)
    v, w = torch.randn(2, 2, s, s, generator=gen, dtype=torch.float64)
    vaw = (v * darcy.apply(w, cx, cy, 1 / s)).sum()
    assert torch.allclose(vaw, (w * darcy.apply(v, cx, cy, 1 / s)).sum())
    assert float((v * darcy.apply(v, cx, cy, 1 / s)).sum()) > 0
    u = darcy.solve(a)
    residual = darcy.apply(u, cx, cy, 1 / s) - 1.0
    assert float(residual.norm()) < 1e-7 * s
    # the turned permeability gives the turned pressure; the pressure is positive inside
    assert torch.allclose(u[1], u[0].T, atol=1e-10)
    assert bool((u > 0).all())


def test_darcy_permeability_is_one_function_at_every_resolution():
    fields = darcy.permeability(3, torch.Generator().manual_seed(0), [24, 72])
    coarse, fine = fields[24], fields[72]
    assert set(coarse.unique().tolist()) == {darcy.LOW, darcy.HIGH}
    # the centre of coarse cell i is the centre of fine cell 3i + 1 (72 = 3 x 24)
    assert torch.equal(fine[:, 1::3, 1::3], coarse)


def cole_hopf(x: torch.Tensor, t: float, nu: float, a: float = 1.2) -> torch.Tensor:
    """A solution of viscous Burgers: u = −2ν φ_x / φ with φ = a + cos(2πx) e^{−4π²νt}, which
    solves the heat equation φ_t = ν φ_xx."""
    decay = math.exp(-4 * math.pi**2 * nu * t)
    phi = a + torch.cos(2 * math.pi * x) * decay
    return -2 * nu * (-2 * math.pi * torch.sin(2 * math.pi * x) * decay) / phi


@pytest.mark.parametrize("t", [0.02, 0.05, 0.1])
def test_burgers_at_small_times_is_the_cole_hopf_solution(t):
    nu = 0.05
    n = burgers.solver_points(nu)
    grid = torch.arange(n, dtype=torch.float64) / n
    u_hat = burgers.solve(cole_hopf(grid, 0.0, nu).unsqueeze(0), nu, t)
    x = burgers.centres(100)
    exact = cole_hopf(x, t, nu)
    got = burgers.solution_at(u_hat, x)[0]
    assert float((got - exact).abs().max()) < 1e-6 * float(exact.abs().max())
    # and the solution moved: not the initial condition again
    assert float((cole_hopf(x, 0.0, nu) - exact).abs().max()) > 5e-3


def test_burgers_solution_is_one_function_at_every_resolution():
    pairs = burgers.generate(4, torch.Generator().manual_seed(1), [32, 96], 0.05)
    (x32, y32), (x96, y96) = pairs[32], pairs[96]
    assert torch.allclose(x96[..., 1::3], x32, atol=1e-6)
    assert torch.allclose(y96[..., 1::3], y32, atol=1e-6)
    assert float(y32.abs().max()) > 0.05  # a solution, not a decayed zero
