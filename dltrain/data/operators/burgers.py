"""1-D viscous Burgers, u_t + u u_x = nu u_xx on the periodic interval [0, 1): random smooth
initial conditions, solved pseudo-spectrally to t = 1.

The initial condition is a Gaussian random function with the spectrum of the FNO paper's
N(0, 625 (-Δ + 25 I)^-2): a Fourier series whose k-th mode has standard deviation
25 / (4 π² k² + 25), truncated at `IC_MODES`, mean zero. It is band-limited, so it has the same
values at a point whatever grid it is sampled on.

The solver works on a grid of its own (`solver_points`) whatever resolution is asked for: spectral
derivatives, the 2/3 rule against aliasing of the quadratic term, and the integrating-factor
fourth-order Runge–Kutta scheme (the diffusion exactly, the advection by RK4). Its solution is
a Fourier series too, evaluated at the cell centres (i + 0.5) / n of any resolution n: the
input and the target at 128 and at 256 points are samples of the same two functions.
"""

from __future__ import annotations

import math

import torch

# The solver's points: 128 (43 modes after the 2/3 rule) resolves the default viscosity to 1e-8
# (checked against 256 points); a smaller viscosity makes steeper fronts and takes more points.
GRID = 128
IC_MODES = 32  # modes of the random initial condition (the 32nd has a std of 6e-4)
T_FINAL = 1.0
# dt <= STABLE / (k_max max|u|): RK4 is stable on the imaginary axis up to 2.83; k_max is the
# largest wavenumber the 2/3 rule keeps
STABLE = 1.5


def solver_points(viscosity: float) -> int:
    """GRID points down to a viscosity of 0.02, then a power of two that grows as 1/viscosity
    (the width of a front): 256 points at 0.01, 2048 at 0.001."""
    need = 2.56 / viscosity
    return GRID if need <= GRID else 2 ** math.ceil(math.log2(need))


def wavenumbers(n: int = GRID) -> torch.Tensor:
    """2πk for the rfft frequencies k = 0 .. n/2 of an n-point grid on [0, 1), float64."""
    return 2 * math.pi * torch.arange(n // 2 + 1, dtype=torch.float64)


def random_modes(n: int, gen: torch.Generator) -> torch.Tensor:
    """(n, IC_MODES) complex Fourier coefficients c_k, k = 1 .. IC_MODES, of random initial
    conditions u0(x) = Σ 2 Re(c_k e^{2πikx}) (so cos and sin parts each of std σ_k)."""
    k = torch.arange(1, IC_MODES + 1, dtype=torch.float64)
    sigma = 25.0 / (4 * math.pi**2 * k**2 + 25.0)
    parts = torch.randn(n, IC_MODES, 2, generator=gen, dtype=torch.float64)
    return torch.complex(parts[..., 0], -parts[..., 1]) * sigma / 2  # cos − i sin: a·cos + b·sin


def series_at(coeffs: torch.Tensor, points: torch.Tensor, first: int = 1) -> torch.Tensor:
    """Σ_k 2 Re(c_k e^{2πikx}) at `points` (m,) for (n, K) coefficients of k = first .. ;
    a constant term (k = 0, `first`=0) is counted once. (n, m), float64."""
    k = torch.arange(first, first + coeffs.shape[1], dtype=torch.float64)
    phase = 2 * math.pi * k[:, None] * points[None, :].to(torch.float64)  # (K, m)
    weight = torch.full((coeffs.shape[1], 1), 2.0, dtype=torch.float64)
    if first == 0:
        weight[0] = 1.0
    return (coeffs.real @ (weight * torch.cos(phase)) - coeffs.imag @ (weight * torch.sin(phase)))


def centres(n: int) -> torch.Tensor:
    """The cell centres (i + 0.5) / n of an n-point grid on [0, 1)."""
    return (torch.arange(n, dtype=torch.float64) + 0.5) / n


def solve(u0: torch.Tensor, nu: float, t: float) -> torch.Tensor:
    """Burgers from `u0` (n, N) values at the grid points j / N to time `t`: the solution's
    rfft coefficients (n, N // 2 + 1), float64 (numpy's normalisation: Σ over points)."""
    n_points = u0.shape[-1]
    k = wavenumbers(n_points)
    dealias = (torch.arange(n_points // 2 + 1) < n_points / 3).to(torch.float64)
    ik = 1j * k * dealias  # the derivative, zero on the modes the 2/3 rule drops

    def advection(u_hat: torch.Tensor) -> torch.Tensor:  # −(u²/2)_x, in Fourier space
        u = torch.fft.irfft(u_hat, n=n_points)
        return -0.5 * ik * torch.fft.rfft(u * u)

    top = float(u0.abs().max()) if u0.numel() else 0.0
    dt_max = STABLE / (float(k[dealias > 0].max()) * max(top, 1e-6))
    steps = max(1, math.ceil(t / dt_max))
    dt = t / steps
    decay = -nu * k**2
    e_half, e_full = torch.exp(decay * dt / 2), torch.exp(decay * dt)
    u_hat = torch.fft.rfft(u0.to(torch.float64)) * dealias
    for _ in range(steps):  # integrating-factor RK4 (Trefethen, Spectral Methods in MATLAB)
        k1 = advection(u_hat)
        k2 = advection(e_half * (u_hat + dt / 2 * k1))
        k3 = advection(e_half * u_hat + dt / 2 * k2)
        k4 = advection(e_full * u_hat + dt * e_half * k3)
        u_hat = e_full * u_hat + dt / 6 * (e_full * k1 + 2 * e_half * (k2 + k3) + k4)
    return u_hat


def solution_at(u_hat: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """The solution whose rfft coefficients (on the solver's grid) are `u_hat`, at `points`:
    its Fourier series (the modes the 2/3 rule keeps), (n, m) float64."""
    n_points = 2 * (u_hat.shape[-1] - 1)
    kept = math.ceil(n_points / 3)
    coeffs = u_hat[:, :kept] / n_points  # c_0 .. c_{kept-1}: u = c_0 + Σ 2 Re(c_k e^{2πikx})
    return series_at(coeffs, points, first=0)


def generate(n: int, gen: torch.Generator, resolutions: list[int], viscosity: float
             ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """`n` pairs (initial condition, solution at t = 1) at each resolution: (n, 1, res) inputs
    and targets, float32."""
    modes = random_modes(n, gen)
    points = solver_points(viscosity)
    grid = torch.arange(points, dtype=torch.float64) / points
    u_hat = solve(series_at(modes, grid), viscosity, T_FINAL)
    out = {}
    for res in resolutions:
        x = series_at(modes, centres(res))
        y = solution_at(u_hat, centres(res))
        out[res] = (x.float().unsqueeze(1), y.float().unsqueeze(1))
    return out
