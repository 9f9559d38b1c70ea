"""2-D Darcy flow, −∇·(a ∇u) = 1 on the unit square with u = 0 on its boundary: a random
piecewise-constant permeability a -> the pressure u.

The permeability is the FNO paper's: a Gaussian random function ψ with covariance
(−Δ + 9 I)^-2 and mean zero (a cosine series, Neumann modes k1, k2 < `PERM_MODES`, without the
constant one), thresholded: a = 12 where ψ >= 0, else 3. The series has a value at every
point, so a grid of any resolution samples the same permeability.

The equation is discretised by finite volumes on the cell centres (i + 0.5) / n of an n x n
grid: the flux through a face between two cells uses the harmonic mean of their
permeabilities (exact for a jump at the face), through a boundary face the cell's own
permeability over half a cell. The symmetric positive definite system is solved for every
sample at once by conjugate gradients with a Jacobi preconditioner, in float64.
"""

from __future__ import annotations

import math

import torch

PERM_MODES = 16  # cosine modes per axis of ψ (the 16th has 1/300 of the first's std)
HIGH, LOW = 12.0, 3.0  # the two permeabilities
TOLERANCE = 1e-8  # CG stops when every sample's residual is this fraction of its right side
# (the data are stored in float32, whose precision is 6e-8)


def permeability(n: int, gen: torch.Generator, resolutions: list[int]
                 ) -> dict[int, torch.Tensor]:
    """`n` random permeability fields at each resolution: (n, res, res) float64 of HIGH, LOW."""
    k = torch.arange(PERM_MODES, dtype=torch.float64)
    eigen = math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2) + 9.0
    coeffs = torch.randn(n, PERM_MODES, PERM_MODES, generator=gen, dtype=torch.float64) / eigen
    # no constant term (as the FNO paper's GRF): with one, the largest of all, 39% of the fields
    # came out more than 95% one permeability
    coeffs[:, 0, 0] = 0.0
    fields = {}
    for res in resolutions:
        centres = (torch.arange(res, dtype=torch.float64) + 0.5) / res
        basis = torch.cos(math.pi * k[:, None] * centres[None, :])  # (K, res)
        psi = basis.T @ coeffs @ basis  # (n, res, res): Σ ξ_k1k2 cos(πk1 x) cos(πk2 y)
        fields[res] = torch.where(psi >= 0, HIGH, LOW)
    return fields


def face_coefficients(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Face permeabilities of (n, s, s) cells: (n, s, s + 1) across axis 2 and (n, s + 1, s)
    across axis 1, the harmonic mean inside, twice the cell's own at the boundary (the
    boundary is half a cell away)."""
    inner_x = 2 * a[:, :, 1:] * a[:, :, :-1] / (a[:, :, 1:] + a[:, :, :-1])
    inner_y = 2 * a[:, 1:, :] * a[:, :-1, :] / (a[:, 1:, :] + a[:, :-1, :])
    cx = torch.cat([2 * a[:, :, :1], inner_x, 2 * a[:, :, -1:]], dim=2)
    cy = torch.cat([2 * a[:, :1, :], inner_y, 2 * a[:, -1:, :]], dim=1)
    return cx, cy


def apply(u: torch.Tensor, cx: torch.Tensor, cy: torch.Tensor, h: float) -> torch.Tensor:
    """The discrete −∇·(a∇u) of (n, s, s) cell values with u = 0 outside (the boundary)."""
    pad_x = torch.nn.functional.pad(u, (1, 1))  # zeros beyond the left and right faces
    pad_y = torch.nn.functional.pad(u, (0, 0, 1, 1))
    flux_x = cx * (pad_x[:, :, 1:] - pad_x[:, :, :-1])  # (n, s, s + 1): a (u_right − u_left)
    flux_y = cy * (pad_y[:, 1:, :] - pad_y[:, :-1, :])
    return -((flux_x[:, :, 1:] - flux_x[:, :, :-1]) + (flux_y[:, 1:, :] - flux_y[:, :-1, :])) / h**2


def solve(a: torch.Tensor, f: float = 1.0) -> torch.Tensor:
    """The pressure u (n, s, s) of permeabilities `a` (n, s, s), source `f`, float64: Jacobi-
    preconditioned conjugate gradients, each sample with its own step sizes."""
    n, s, _ = a.shape
    h = 1.0 / s
    cx, cy = face_coefficients(a.to(torch.float64))
    diag = (cx[:, :, 1:] + cx[:, :, :-1] + cy[:, 1:, :] + cy[:, :-1, :]) / h**2
    b = torch.full((n, s, s), f, dtype=torch.float64)
    u = torch.zeros_like(b)
    r = b.clone()
    z = r / diag
    p = z.clone()
    rz = (r * z).sum((1, 2))
    goal = TOLERANCE * b.flatten(1).norm(dim=1)
    # CG converges in about sqrt(condition number) ~ s iterations times a log factor
    for _ in range(50 * s):
        ap = apply(p, cx, cy, h)
        alpha = rz / (p * ap).sum((1, 2))
        u += alpha[:, None, None] * p
        r -= alpha[:, None, None] * ap
        if bool((r.flatten(1).norm(dim=1) <= goal).all()):
            return u
        z = r / diag
        rz_next = (r * z).sum((1, 2))
        p = z + (rz_next / rz)[:, None, None] * p
        rz = rz_next
    raise RuntimeError(f"Darcy: conjugate gradients did not converge on a {s}x{s} grid")


def generate(n: int, gen: torch.Generator, resolutions: list[int]
             ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """`n` pairs (permeability, pressure) at each resolution: (n, 1, res, res), float32."""
    fields = permeability(n, gen, resolutions)
    return {res: (a.float().unsqueeze(1), solve(a).float().unsqueeze(1))
            for res, a in fields.items()}
