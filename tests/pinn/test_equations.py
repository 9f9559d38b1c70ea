"""The equation catalogue: every residual vanishes on its exact solution and not on a wrong
one, the conditions are the problems' own, and the Burgers reference (Cole–Hopf by
Gauss–Hermite quadrature) agrees with an independent pseudo-spectral solver and with the
published steepest slope."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import dltrain.pinn.equations  # noqa: F401  (registers the catalogue in EQUATIONS)
from dltrain.errors import ConfigError
from dltrain.pinn.burgers_reference import burgers_cole_hopf, converged_nodes
from dltrain.pinn.pde import EQUATIONS, Field

PI = math.pi
NU = 0.01 / PI

# Each equation's usual setting (its YAML's), a second setting that moves every coefficient,
# and its exact solution written here again, independently of the class, as torch of x (N, dims).
SETTINGS = {
    "poisson1d": ({"k": 1.0}, {"x": [-1, 1]}),
    "heat1d": ({"alpha": 0.4, "n": 1.0}, {"x": [0, 1], "t": [0, 1]}),
    "burgers1d": ({"nu": NU}, {"x": [-1, 1], "t": [0, 1]}),
    "helmholtz2d": ({"k": 1.0, "a1": 1.0, "a2": 4.0}, {"x": [-1, 1], "y": [-1, 1]}),
}
MOVED = {
    "poisson1d": {"k": 2.0},
    "heat1d": {"alpha": 0.1, "n": 3.0},
    "helmholtz2d": {"k": 3.0, "a1": 2.0, "a2": 3.0},
}


def exact(name: str, x: torch.Tensor, c: dict) -> torch.Tensor:
    if name == "poisson1d":
        return torch.sin(c["k"] * PI * x[:, 0])
    if name == "heat1d":
        return (torch.exp(-c["alpha"] * c["n"] ** 2 * PI**2 * x[:, 1])
                * torch.sin(c["n"] * PI * x[:, 0]))
    if name == "helmholtz2d":
        return torch.sin(c["a1"] * PI * x[:, 0]) * torch.sin(c["a2"] * PI * x[:, 1])
    raise KeyError(name)


def build(name: str, coefficients: dict | None = None):
    default, domain = SETTINGS[name]
    return EQUATIONS[name](coefficients or default, domain)


def points(equation, n: int = 200, seed: int = 0) -> torch.Tensor:
    """Random float64 points inside the equation's box, requiring grad."""
    g = torch.Generator().manual_seed(seed)
    low = torch.tensor(equation.box.low, dtype=torch.float64)
    high = torch.tensor(equation.box.high, dtype=torch.float64)
    x = low + (high - low) * torch.rand(n, equation.box.dims, generator=g, dtype=torch.float64)
    return x.requires_grad_(True)


def test_the_catalogue_has_the_four_equations():
    assert {"poisson1d", "heat1d", "burgers1d", "helmholtz2d"} <= set(EQUATIONS)
    assert EQUATIONS["heat1d"].names == ("x", "t") and EQUATIONS["heat1d"].time == "t"
    assert build("heat1d").box.time == 1 and build("helmholtz2d").box.time is None


@pytest.mark.parametrize("name", sorted(MOVED))
@pytest.mark.parametrize("setting", ["usual", "moved"])
def test_residual_vanishes_on_the_exact_solution_only(name, setting):
    c = SETTINGS[name][0] if setting == "usual" else MOVED[name]
    equation = build(name, c)
    x = points(equation)
    residual = equation.residual(Field(x, exact(name, x, c), equation.box), c)
    assert residual.dtype == torch.float64 and residual.shape == (200,)
    assert residual.abs().max() < 1e-10
    # A wrong function: the exact one plus a parabola (not a cosine: with k = 1, cos(x) solves
    # Helmholtz's homogeneous equation and would go unnoticed).
    wrong = exact(name, x, c) + 0.5 * x[:, 0] ** 2
    assert equation.residual(Field(x, wrong, equation.box), c).abs().max() > 1e-2


@pytest.mark.parametrize("name", sorted(MOVED))
def test_residual_reads_its_coefficients_from_c_and_differentiates_through_them(name):
    """An inverse problem trains a coefficient: the residual must depend on c, not on the
    coefficients the equation was built with."""
    c = SETTINGS[name][0]
    equation = build(name)
    x = points(equation)
    u = exact(name, x, c)
    learnt = {k: torch.tensor(v * 1.1, dtype=torch.float64, requires_grad=True)
              for k, v in c.items()}
    loss = equation.residual(Field(x, u, equation.box), learnt).pow(2).mean()
    assert loss > 1e-6
    loss.backward()
    moved = [k for k, v in learnt.items() if v.grad is not None and v.grad.abs() > 0]
    # heat1d's n enters only the conditions, not the residual.
    assert moved == ([k for k in c if k != "n"])


def test_burgers_residual_vanishes_on_a_viscous_front_and_moves_nu_toward_the_truth():
    """u = -tanh(x / (2 nu)) is a stationary solution of u_t + u u_x = nu u_xx."""
    nu = 0.05
    equation = build("burgers1d", {"nu": nu})
    x = points(equation)
    front = -torch.tanh(x[:, 0] / (2 * nu))
    field = Field(x, front, equation.box)
    assert equation.residual(field, {"nu": nu}).abs().max() < 1e-12
    learnt = torch.tensor(0.08, dtype=torch.float64, requires_grad=True)
    equation.residual(field, {"nu": learnt}).pow(2).mean().backward()
    assert learnt.grad > 0  # a gradient step lowers nu toward 0.05
    wrong = Field(x, -torch.sin(PI * x[:, 0]) * (1 - x[:, 1]), equation.box)
    assert equation.residual(wrong, {"nu": nu}).abs().max() > 0.5


class FiniteDifferences:
    """A Field of the Burgers reference whose derivatives are fourth-order central
    differences of burgers_cole_hopf: the same `residual` code judges the reference."""

    def __init__(self, x: np.ndarray, t: np.ndarray, h: float = 2.5e-4) -> None:
        def u(dx: float = 0.0, dt: float = 0.0) -> np.ndarray:
            return burgers_cole_hopf(x + dx, t + dt, NU)

        def first(f):
            return (f(-2) - 8 * f(-1) + 8 * f(1) - f(2)) / (12 * h)

        self.u = torch.from_numpy(u())
        self._d = {"x": first(lambda i: u(dx=i * h)), "t": first(lambda i: u(dt=i * h))}
        self._dd = (-u(dx=-2 * h) + 16 * u(dx=-h) - 30 * u() + 16 * u(dx=h) - u(dx=2 * h)) / (
            12 * h * h)

    def d(self, name: str) -> torch.Tensor:
        return torch.from_numpy(self._d[name])

    def dd(self, name: str) -> torch.Tensor:
        assert name == "x"
        return torch.from_numpy(self._dd)


def test_the_burgers_reference_satisfies_the_equation():
    """Interior points away from t = 0, the shock at x = 0 and its steepest time included."""
    x, t = np.meshgrid(np.concatenate([np.linspace(-0.9, 0.9, 19), [-0.01, 0.004, 0.02]]),
                       [0.1, 0.3, 0.51, 0.75, 0.95])
    field = FiniteDifferences(x.ravel(), t.ravel())
    residual = build("burgers1d").residual(field, {"nu": NU}).numpy()
    scale = (field.d("t").abs() + (field.u * field.d("x")).abs() + NU * field.dd("x").abs())
    assert scale.max() > 50  # the shock is among the points
    assert np.max(np.abs(residual) / (scale.numpy() + 1.0)) < 1e-4
    wrong = build("burgers1d").residual(field, {"nu": 2 * NU}).numpy()
    assert np.max(np.abs(wrong) / (scale.numpy() + 1.0)) > 0.1


def spectral_burgers(n: int, dt: float, times: list[float]) -> tuple[np.ndarray, dict]:
    """An independent solver: the periodic problem on [-1, 1), Fourier pseudo-spectral in space
    (2/3-dealiased u²), RK4 in time with an integrating factor for the diffusion."""
    x = -1 + 2 * np.arange(n) / n
    modes = np.fft.rfftfreq(n, d=1 / n)
    k = PI * modes
    kept = modes < n / 3

    def advection(v):
        u = np.fft.irfft(v, n=n)
        return -0.5j * k * kept * np.fft.rfft(u * u)

    half = np.exp(-NU * k**2 * dt / 2)
    full = half * half
    v = np.fft.rfft(-np.sin(PI * x))
    wanted = {round(time / dt): time for time in times}
    out = {}
    for step in range(1, max(wanted) + 1):
        a = dt * advection(v)
        b = dt * advection(half * (v + a / 2))
        c = dt * advection(half * v + b / 2)
        d = dt * advection(full * v + half * c)
        v = full * v + (full * a + 2 * half * (b + c) + d) / 6
        if step in wanted:
            out[wanted[step]] = np.fft.irfft(v, n=n)
    return x, out


def test_the_burgers_reference_agrees_with_a_spectral_solver():
    x, solved = spectral_burgers(1024, 1e-3, [0.25, 0.5, 1.0])
    for time, u in solved.items():
        reference = burgers_cole_hopf(x, np.full_like(x, time), NU)
        # Everywhere, the shock at x = 0 included (measured: 2e-10, 2e-5, 6e-7).
        assert np.max(np.abs(reference - u)) < 1e-4, time
    assert np.max(np.abs(solved[1.0])) > 0.5  # not decayed to nothing


def test_the_burgers_reference_starts_from_the_initial_profile():
    x = np.linspace(-1, 1, 101)
    assert np.max(np.abs(burgers_cole_hopf(x, np.zeros_like(x), NU) + np.sin(PI * x))) < 1e-14
    # Over a short time dt, u moves by at most dt * max|u u_x - nu u_xx| = dt * (pi + nu pi²).
    early = burgers_cole_hopf(x, np.full_like(x, 1e-4), NU)
    change = np.max(np.abs(early + np.sin(PI * x)))
    assert 1e-6 < change < 1e-4 * (PI + NU * PI**2)


def test_the_burgers_reference_has_the_published_steepest_slope():
    """Basdevant et al. (1986), Computers and Fluids 14(1), for this very problem: the slope
    at x = 0 is steepest at t = 1.6037/pi, where |u_x| = 152.00516 (at t = 1 it is 84)."""
    h = 1e-6

    def slope(time: float) -> float:
        u = burgers_cole_hopf(np.array([-h, h]), np.full(2, time), NU)
        return float((u[1] - u[0]) / (2 * h))

    assert slope(1.6037 / PI) == pytest.approx(-152.00516, abs=1e-3)
    assert abs(slope(1.5 / PI)) < 151 and abs(slope(1.7 / PI)) < 151
    assert slope(1.0) == pytest.approx(-83.96, abs=0.05)


def test_the_burgers_reference_chooses_its_nodes_by_convergence():
    x, t = np.meshgrid(np.linspace(-1, 1, 256), np.linspace(0, 1, 100))
    assert converged_nodes(x.ravel(), t.ravel(), NU) == 120
    assert converged_nodes(x.ravel(), 0.2 * t.ravel(), NU) < 120
    u = burgers_cole_hopf(x[::4, ::4], t[::4, ::4], NU)
    assert u.shape == (25, 64) and u.dtype == np.float64
    with pytest.raises(ConfigError, match="does not converge"):
        burgers_cole_hopf(np.linspace(-1, 1, 9), np.full(9, 2.0), 1.0)


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_reference_takes_float32_or_float64_and_answers_float64(name):
    equation = build(name)
    x = points(equation, 50).detach()
    for dtype in (torch.float32, torch.float64):
        values = equation.reference(x.to(dtype))
        assert values.dtype == torch.float64 and values.shape == (50,)
    if name != "burgers1d":
        c = SETTINGS[name][0]
        assert torch.allclose(equation.reference(x), exact(name, x, c), atol=1e-15)
    else:
        assert torch.allclose(equation.reference(x), torch.from_numpy(
            burgers_cole_hopf(x[:, 0].numpy(), x[:, 1].numpy(), NU)), atol=1e-15)


def test_conditions_are_the_problems_own():
    line = torch.linspace(0, 1, 41, dtype=torch.float32)
    zeros, ones = torch.zeros_like(line), torch.ones_like(line)
    heat = build("heat1d", {"alpha": 0.4, "n": 2.0})
    start = heat.initial(torch.stack([line, zeros], 1))
    assert start.dtype == torch.float32
    assert torch.allclose(start, torch.sin(2 * PI * line), atol=1e-6)
    walls = torch.stack([torch.cat([zeros, ones]), torch.cat([line, line])], 1)
    assert heat.boundary(walls).abs().max() < 1e-6

    burgers = build("burgers1d")
    x = 2 * line - 1
    assert torch.allclose(burgers.initial(torch.stack([x, zeros], 1)), -torch.sin(PI * x),
                          atol=1e-6)
    ends = torch.stack([torch.cat([-ones, ones]), torch.cat([line, line])], 1)
    assert burgers.boundary(ends).abs().max() < 1e-12

    poisson = build("poisson1d")
    assert poisson.boundary(torch.tensor([[-1.0], [1.0]])).abs().max() < 1e-6
    helmholtz = build("helmholtz2d")
    faces = torch.stack([torch.cat([-ones, ones, x, x]), torch.cat([x, x, -ones, ones])], 1)
    assert helmholtz.boundary(faces).abs().max() < 1e-5


def test_conditions_follow_a_moved_domain():
    """Boundary values are the exact solution's, so a domain the YAML moves stays solvable."""
    poisson = EQUATIONS["poisson1d"]({"k": 1.0}, {"x": [-0.5, 0.5]})
    ends = torch.tensor([[-0.5], [0.5]], dtype=torch.float64)
    assert torch.allclose(poisson.boundary(ends), torch.tensor([-1.0, 1.0], dtype=torch.float64))
    heat = EQUATIONS["heat1d"]({"alpha": 0.4, "n": 1.0}, {"x": [0, 1], "t": [0.5, 1]})
    late = torch.tensor([[0.5, 0.5]], dtype=torch.float64)
    assert torch.allclose(heat.initial(late), torch.tensor([math.exp(-0.4 * PI**2 * 0.5)],
                                                          dtype=torch.float64))
    # Burgers' walls inside the period and a later initial line: the Cole–Hopf values there
    burgers = EQUATIONS["burgers1d"]({"nu": 0.01 / PI}, {"x": [-0.5, 0.5], "t": [0.25, 1]})
    walls = torch.tensor([[-0.5, 0.5], [0.5, 0.5]], dtype=torch.float64)
    start = torch.tensor([[0.3, 0.25]], dtype=torch.float64)
    assert torch.equal(burgers.boundary(walls), burgers.reference(walls))
    assert burgers.boundary(walls).abs().min() > 0.1
    assert torch.equal(burgers.initial(start), burgers.reference(start))
    assert not torch.allclose(burgers.initial(start), -torch.sin(PI * start[:, 0]), atol=1e-3)


def test_burgers_conditions_in_closed_form_are_its_reference():
    """On the usual domain the initial profile and the zero walls are written out (no
    quadrature on every draw of points): they are the Cole–Hopf values to rounding."""
    burgers = build("burgers1d")
    gen = torch.Generator().manual_seed(0)
    x = 2 * torch.rand(200, generator=gen, dtype=torch.float64) - 1
    t = torch.rand(200, generator=gen, dtype=torch.float64)
    line = torch.stack([x, torch.zeros_like(x)], 1)
    walls = torch.stack([torch.where(x > 0, 1.0, -1.0).to(torch.float64), t], 1)
    torch.testing.assert_close(burgers.initial(line), burgers.reference(line), rtol=0,
                               atol=1e-14)
    torch.testing.assert_close(burgers.boundary(walls), burgers.reference(walls), rtol=0,
                               atol=1e-14)


def test_bad_coefficients_or_domains_are_one_sentence():
    with pytest.raises(ConfigError, match=r"pde.coefficients: pde=burgers1d takes \['nu'\]"):
        EQUATIONS["burgers1d"]({"mu": 0.1}, {"x": [-1, 1], "t": [0, 1]})
    with pytest.raises(ConfigError, match=r"pde.domain: .*missing \['t'\]"):
        EQUATIONS["heat1d"]({"alpha": 0.4, "n": 1.0}, {"x": [0, 1]})
    with pytest.raises(ConfigError, match=r"pde.domain.x: .*low < high"):
        EQUATIONS["poisson1d"]({"k": 1.0}, {"x": [1, -1]})
