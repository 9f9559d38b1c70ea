"""What a differential equation is to a physics-informed network: a box, a residual, conditions
and a reference solution.

Each equation of `pde=NAME` is a small class (dltrain/pinn/equations.py) registered by name
in `EQUATIONS` and built from its YAML's coefficients: no formula is ever read from a string.
Its residual is written with a `Field`, which gives the network's derivatives by automatic
differentiation (`torch.autograd.grad` with `create_graph`, so that the loss can be
differentiated again with respect to the weights).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Box:
    """The domain: one interval per coordinate, in the order the network takes them.

    `time` is the index of the time coordinate (its lower end is the initial line), or None
    for a stationary problem. Boundary points lie on the faces of the space coordinates.
    """

    names: tuple[str, ...]  # e.g. ("x", "t") or ("x", "y")
    low: tuple[float, ...]
    high: tuple[float, ...]
    time: int | None = None

    @property
    def dims(self) -> int:
        return len(self.names)

    @property
    def space(self) -> tuple[int, ...]:
        """The indices of the space coordinates."""
        return tuple(i for i in range(self.dims) if i != self.time)

    def index(self, name: str) -> int:
        return self.names.index(name)


class Field:
    """The network's output u at points x (x requires grad), and its derivatives there.

    `d("x")` is du/dx and `dd("x")` d²u/dx², each an (N,) tensor, computed once and kept:
    the first derivatives of every coordinate come from one backward pass.

    x may carry leading axes, (..., N, dims) with u (..., N, 1): the networks of a vectorised
    stack, (members, N, dims). Their points do not mix (member i's u depends on its own
    points only), so the gradient of the sum of all u is each member's own derivative.
    """

    def __init__(self, x: torch.Tensor, u: torch.Tensor, box: Box) -> None:
        self.x = x
        self.u = u.reshape(x.shape[:-1])
        self.box = box
        self._grad: torch.Tensor | None = None
        self._second: dict[int, torch.Tensor] = {}

    def coordinate(self, name: str) -> torch.Tensor:
        return self.x[..., self.box.index(name)]

    def grad(self) -> torch.Tensor:
        """(..., N, dims): du/dx_i at every point."""
        if self._grad is None:
            (self._grad,) = torch.autograd.grad(self.u.sum(), self.x, create_graph=True)
        return self._grad

    def d(self, name: str) -> torch.Tensor:
        return self.grad()[..., self.box.index(name)]

    def dd(self, name: str) -> torch.Tensor:
        i = self.box.index(name)
        if i not in self._second:
            (second,) = torch.autograd.grad(self.grad()[..., i].sum(), self.x,
                                            create_graph=True)
            self._second[i] = second[..., i]
        return self._second[i]


Coefficients = Mapping[str, "torch.Tensor | float"]


class Equation(ABC):
    """A differential equation on a box with Dirichlet boundary values (and, when it has a
    time coordinate, initial values). Subclasses set `box` and `coefficients` (name -> true
    value) and write `residual` and `reference`; the boundary and initial values are the
    reference's unless a subclass says otherwise.

    Coordinates are float tensors of shape (N, dims); values are (N,) tensors.
    """

    name: str
    names: tuple[str, ...] = ("x",)  # the coordinates, in the network's input order
    time: str | None = None  # the name of the time coordinate, if any

    def __init__(self, coefficients: Mapping[str, float],
                 domain: Mapping[str, tuple[float, float] | list[float]]) -> None:
        """`coefficients`: every coefficient of the equation by name (its YAML lists them
        all); `domain`: [low, high] of every coordinate in `names`."""
        self.coefficients = {k: float(v) for k, v in coefficients.items()}
        self.box = Box(self.names, tuple(float(domain[n][0]) for n in self.names),
                       tuple(float(domain[n][1]) for n in self.names),
                       None if self.time is None else self.names.index(self.time))

    @abstractmethod
    def residual(self, field: Field, c: Coefficients) -> torch.Tensor:
        """The equation's residual at the field's points: 0 where u solves it. `c` holds
        every coefficient by name (a trainable tensor for the learnt ones)."""

    @abstractmethod
    def reference(self, x: torch.Tensor) -> torch.Tensor:
        """The exact (or reference) solution at `x`, in float64: the truth metrics use."""

    def boundary(self, x: torch.Tensor) -> torch.Tensor:
        """u's prescribed values at boundary points: the reference's there, so that a domain
        the YAML moves stays consistent with the solution the metrics compare against."""
        return self.reference(x).to(x.dtype)

    def initial(self, x: torch.Tensor) -> torch.Tensor:
        """u's prescribed values at points of the initial line (t = box.low[time])."""
        return self.reference(x).to(x.dtype)


EQUATIONS: dict[str, Callable[..., Equation]] = {}


def register(name: str) -> Callable[[type[Equation]], type[Equation]]:
    """Class decorator: `pde=name` builds this class from its YAML's coefficients."""
    def add(cls: type[Equation]) -> type[Equation]:
        cls.name = name
        EQUATIONS[name] = cls
        return cls
    return add
