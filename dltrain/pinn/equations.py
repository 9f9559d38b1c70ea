"""The catalogue of `pde=NAME`: one small class per equation, registered by name.

Every class states its equation, its usual domain and its exact (or reference) solution. The
residual reads every coefficient from `c` (never from `self.coefficients`), so that a learnt
coefficient (`pde.learn=[nu]`) is differentiated through; `reference` uses the true values.
Boundary and initial values are the reference's values at the given points, so a domain the
YAML moves stays consistent with the solution the metrics compare against; on the usual
domains they equal the problem's own conditions (zeros on the walls, the initial profile).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from dltrain.errors import ConfigError
from dltrain.pinn.burgers_reference import burgers_cole_hopf
from dltrain.pinn.pde import Coefficients, Equation, Field, register

PI = math.pi


class Catalogued(Equation):
    """What the catalogue's equations share: their coefficients' names and their domain are
    checked when built."""

    coefficient_names: tuple[str, ...] = ()

    def __init__(self, coefficients: Mapping[str, float],
                 domain: Mapping[str, tuple[float, float] | list[float]]) -> None:
        missing = [n for n in self.coefficient_names if n not in coefficients]
        unknown = [n for n in coefficients if n not in self.coefficient_names]
        if missing or unknown:
            raise ConfigError(
                f"pde.coefficients: pde={self.name} takes {list(self.coefficient_names)}, "
                f"got {sorted(coefficients)}.")
        missing = [n for n in self.names if n not in domain]
        if missing:
            raise ConfigError(f"pde.domain: pde={self.name} needs [low, high] for "
                              f"{list(self.names)}, missing {missing}.")
        super().__init__(coefficients, domain)
        for name, low, high in zip(self.box.names, self.box.low, self.box.high, strict=True):
            if not low < high:
                raise ConfigError(f"pde.domain.{name}: pde={self.name} needs low < high, "
                                  f"got [{low}, {high}].")


@register("poisson1d")
class Poisson1D(Catalogued):
    """-u'' = (k pi)² sin(k pi x) on x in [-1, 1], u(±1) = 0; exact u = sin(k pi x).

    DeepXDE's Poisson example for k = 1. For integer k the boundary values (the exact
    solution's) are 0 at ±1.
    """

    names = ("x",)
    coefficient_names = ("k",)

    def residual(self, field: Field, c: Coefficients) -> torch.Tensor:
        wave = c["k"] * PI
        return -field.dd("x") - wave**2 * torch.sin(wave * field.coordinate("x"))

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(torch.float64)
        return torch.sin(self.coefficients["k"] * PI * x[:, 0])


@register("heat1d")
class Heat1D(Catalogued):
    """u_t = alpha u_xx on x in [0, 1], t in [0, 1]; u(x, 0) = sin(n pi x), u(0, t) = u(1, t) = 0;
    exact u = exp(-alpha n² pi² t) sin(n pi x).

    DeepXDE's heat example (a = 0.4, L = 1, n = 1). `n` enters only the conditions.
    """

    names = ("x", "t")
    time = "t"
    coefficient_names = ("alpha", "n")

    def residual(self, field: Field, c: Coefficients) -> torch.Tensor:
        return field.d("t") - c["alpha"] * field.dd("x")

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(torch.float64)
        alpha, n = self.coefficients["alpha"], self.coefficients["n"]
        decay = torch.exp(-alpha * (n * PI) ** 2 * x[:, 1])
        return decay * torch.sin(n * PI * x[:, 0])


@register("burgers1d")
class Burgers1D(Catalogued):
    """u_t + u u_x = nu u_xx on x in [-1, 1], t in [0, 1]; u(x, 0) = -sin(pi x),
    u(±1, t) = 0; nu = 0.01/pi (Raissi, Perdikaris and Karniadakis's benchmark).

    No closed form: the reference is the Cole–Hopf integral by Gauss–Hermite quadrature
    (dltrain/pinn/burgers_reference.py), exact to ~1e-15 with a shock forming at x = 0. It
    holds for any x (the solution is odd and 2-periodic, hence 0 at ±1) and t >= 0, and it
    gives -sin(pi x) at t = 0 and 0 at x = ±1 to rounding.
    """

    names = ("x", "t")
    time = "t"
    coefficient_names = ("nu",)

    def residual(self, field: Field, c: Coefficients) -> torch.Tensor:
        return field.d("t") + field.u * field.d("x") - c["nu"] * field.dd("x")

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """-sin(pi x) where the initial line is t = 0: the condition itself, exactly (the
        Cole–Hopf integral gives it to rounding, at a cost paid on every draw of points)."""
        if self.box.low[self.box.time] == 0.0:  # type: ignore[index]
            return -torch.sin(PI * x[:, 0])
        return super().initial(x)

    def boundary(self, x: torch.Tensor) -> torch.Tensor:
        """0 on walls at odd whole x (the usual ±1: the solution is odd and 2-periodic, so 0
        there exactly); the reference's values on walls elsewhere."""
        if bool((x[:, 0].remainder(2) == 1).all()):
            return torch.zeros_like(x[:, 0])
        return super().boundary(x)

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        points = x.detach().to("cpu", torch.float64).numpy()
        u = burgers_cole_hopf(points[:, 0], points[:, 1], self.coefficients["nu"])
        return torch.from_numpy(np.ascontiguousarray(u)).to(x.device)


@register("helmholtz2d")
class Helmholtz2D(Catalogued):
    """-(u_xx + u_yy) - k² u = f on (x, y) in [-1, 1]², u = its exact values on the boundary;
    exact u = sin(a1 pi x) sin(a2 pi y), so f = ((a1 pi)² + (a2 pi)² - k²) u.

    Wang, Teng and Perdikaris's benchmark (k = 1, a1 = 1, a2 = 4): its gradients' imbalance
    between the residual and the boundary terms is what makes it hard.
    """

    names = ("x", "y")
    coefficient_names = ("k", "a1", "a2")

    def residual(self, field: Field, c: Coefficients) -> torch.Tensor:
        wave_x, wave_y = c["a1"] * PI, c["a2"] * PI
        x, y = field.coordinate("x"), field.coordinate("y")
        shape = torch.sin(wave_x * x) * torch.sin(wave_y * y)
        source = (wave_x**2 + wave_y**2 - c["k"] ** 2) * shape
        return -(field.dd("x") + field.dd("y")) - c["k"] ** 2 * field.u - source

    def reference(self, x: torch.Tensor) -> torch.Tensor:
        x = x.detach().to(torch.float64)
        a1, a2 = self.coefficients["a1"], self.coefficients["a2"]
        return torch.sin(a1 * PI * x[:, 0]) * torch.sin(a2 * PI * x[:, 1])
