"""What a physics-informed network carries beyond its layers: the coefficients an inverse
problem learns, and inputs cast to its own precision.

The coefficients (`pde.learn=[nu]`) live on the network (its submodule `pde`), so that the
optimiser steps them with the weights, checkpoints hold them and resume restores them, and a
model rebuilt from a run's saved spec (predict, export, load) has the same parameters. Each is
its first guess times exp(θ), θ starting at 0: positive, and stepped in relative terms, which
suits coefficients as small as Burgers' ν = 0.0032 as well as ones near 1.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class LearnedCoefficients(nn.Module):
    def __init__(self, guesses: Sequence[tuple[str, float]]) -> None:
        super().__init__()
        self.names = tuple(name for name, _ in guesses)
        self.log_factor = nn.ParameterDict(
            {name: nn.Parameter(torch.zeros(())) for name, _ in guesses})
        self.register_buffer("guess", torch.tensor([float(g) for _, g in guesses],
                                                   dtype=torch.float64))

    def values(self) -> dict[str, torch.Tensor]:
        """name -> the coefficient's current value (a 0-d tensor that training moves)."""
        return {name: self.guess[i].to(self.log_factor[name].dtype)
                * torch.exp(self.log_factor[name]) for i, name in enumerate(self.names)}

    def floats(self) -> dict[str, float]:
        with torch.no_grad():
            return {name: float(v) for name, v in self.values().items()}


def physics_ready(model: nn.Module, guesses: Sequence[tuple[str, float]]) -> nn.Module:
    """`model` with the learnt coefficients as its submodule `pde` (if any), taking its
    inputs in its own precision.

    A PINN's points are float64 (its derivatives are taken with respect to them); the network
    runs in float32 for Adam and, under optim=adam_lbfgs, in float64 for L-BFGS, whose line
    search stalls on float32 losses. The cast is differentiable: derivatives with respect to
    the float64 points stay exact to the network's own precision.
    """
    if guesses:
        model.add_module("pde", LearnedCoefficients(guesses))
    model.register_forward_pre_hook(in_own_precision)
    return model


def in_own_precision(model: nn.Module, args: tuple) -> tuple:
    """A forward pre-hook: floating inputs in the dtype of the model's parameters."""
    dtype = next(model.parameters()).dtype
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a
                 for a in args)


def learned(model: nn.Module) -> LearnedCoefficients | None:
    found = getattr(model, "pde", None)
    return found if isinstance(found, LearnedCoefficients) else None
