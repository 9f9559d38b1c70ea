"""Optimisers over parameter groups, learning-rate schedules, and explicit penalty terms."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from omegaconf import DictConfig
from torch import nn

from dltrain.targets import call_target


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weights (tensors of 2+ dimensions) decay; biases and normalisation parameters do not.

    Decaying a bias or a norm's scale does not limit capacity, it only shifts or shrinks
    activations, which is why weight decay (and the L2/L1 penalties) skip 1-D parameters.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def build_optimizer(cfg: DictConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser of `cfg._target_` over the decay / no-decay parameter groups."""
    groups = decay_groups(model, float(cfg.get("weight_decay", 0.0)))
    return call_target(cfg, "optim", params=groups)


# What each schedule needs at run time, by option name: its length in optimiser steps.
_SCHEDULE_LENGTH: dict[str, Callable[[int], dict]] = {
    "cosine": lambda total: {"T_max": total},
}


def build_scheduler(cfg: DictConfig, optimizer: torch.optim.Optimizer, total_steps: int
                    ) -> torch.optim.lr_scheduler.LRScheduler | None:
    """The learning-rate schedule, stepped once per optimiser step; None for `sched=none`."""
    if cfg.name == "none":
        return None
    runtime = _SCHEDULE_LENGTH.get(str(cfg.name), lambda total: {})(total_steps)
    return call_target(cfg, "sched", optimizer=optimizer, **runtime)


@dataclass(frozen=True)
class Penalty:
    """coefficient * sum over weights of |w|^power, added to the training loss."""

    coefficient: float
    power: int  # 1 for L1, 2 for L2

    def __call__(self, weights: list[torch.Tensor]) -> torch.Tensor:
        if self.power == 1:
            total = sum(w.abs().sum() for w in weights)
        else:
            total = sum(w.square().sum() for w in weights)
        return self.coefficient * total


def penalties(cfg: DictConfig) -> list[Penalty]:
    """The L1 / L2 terms that `penalty.l1` and `penalty.l2` switch on (zero means off)."""
    terms = [Penalty(float(cfg.get("l1", 0.0)), 1), Penalty(float(cfg.get("l2", 0.0)), 2)]
    return [t for t in terms if t.coefficient > 0]


def penalised_weights(model: nn.Module) -> list[torch.Tensor]:
    """The tensors the penalties act on: the same ones weight decay acts on."""
    return [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
