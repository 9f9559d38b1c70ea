"""optim=adam_lbfgs: Adam for `switch_at` optimiser steps, then L-BFGS, in one run.

The physics-informed networks' standard recipe: Adam finds the basin, L-BFGS (a quasi-Newton
method with a line search, on the full set of points) descends it to a precision Adam does
not reach. One optimiser object, one step counter: the run's schedule, checkpoints and
resume see one optimiser whose state holds both phases.

The L-BFGS phase is made robust where a bare L-BFGS is not. In float32 its strong-Wolfe line
search returns a zero step once the loss's changes fall below float32's resolution, and torch's
LBFGS then stops iterating for good (DeepXDE's issues #1605 and #1819 show the same on
Burgers), leaving the run where Adam left it. Here the parameters move to float64 at the switch
(`lbfgs_dtype`; on Burgers, measured: float32 L-BFGS froze at rel_l2 1.5e-2 where float64 went
on), and a call that ends before its `max_iter` iterations or `max_eval` evaluations is a
stall: the curvature history is thrown away (`restarts` counts them) and the next step starts
again from a steepest-descent step, which the line search can take.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

log = logging.getLogger("dltrain")


def _adam_update(optimizer: torch.optim.Adam, closure: Callable[[], torch.Tensor]
                 ) -> torch.Tensor:
    step = torch.optim.Adam.step
    if getattr(step, "hooked", False):  # torch's wrapper that runs the step hooks
        step = step.__wrapped__  # type: ignore[attr-defined]
    return step(optimizer, closure)


class AdamLBFGS(torch.optim.Adam):
    """Adam (whose param groups the learning-rate schedule acts on) until `switch_at`
    optimiser steps are taken, then `torch.optim.LBFGS` with the settings of `lbfgs`.

    Every step takes a closure (the run's step function gives it one, as for L-BFGS).
    """

    needs_closure = True  # dltrain.training.steps: the L-BFGS kind of step

    def __init__(self, params: Iterable[Any], lr: float, betas: tuple[float, float],
                 eps: float, weight_decay: float, switch_at: int, lbfgs: Mapping[str, Any],
                 lbfgs_dtype: str = "float64", fused: bool | None = None,
                 foreach: bool | None = None) -> None:
        super().__init__(params, lr=lr, betas=tuple(betas), eps=eps,
                         weight_decay=weight_decay, fused=fused, foreach=foreach)
        self.switch_at = int(switch_at)
        flat = [p for group in self.param_groups for p in group["params"]]
        # tolerances of zero: the phase ends with the run's step budget, not when a float32
        # loss stops changing in its seventh digit
        self.lbfgs = torch.optim.LBFGS(flat, **{"tolerance_grad": 0.0, "tolerance_change": 0.0,
                                                **dict(lbfgs)})
        self.dtype = getattr(torch, lbfgs_dtype)  # the parameters' in the L-BFGS phase
        self.taken = 0  # optimiser steps taken, both phases
        self.restarts = 0  # L-BFGS histories thrown away after a stall

    @property
    def phase(self) -> str:
        return "adam" if self.taken < self.switch_at else "lbfgs"

    def step(self, closure: Callable[[], torch.Tensor] | None = None  # type: ignore[override]
             ) -> torch.Tensor:
        if closure is None:
            raise ValueError("optim=adam_lbfgs steps with a closure (its L-BFGS phase "
                             "evaluates the loss as often as its line search asks)")
        if self.taken < self.switch_at:
            # Adam's own update, not its hooked wrapper (torch wraps Adam.step once any Adam
            # exists): this step's hooks, which run around it, would otherwise run twice
            loss = _adam_update(self, closure)
        else:
            if self.taken == self.switch_at:
                log.info(f"step {self.taken}: Adam -> L-BFGS (optim.switch_at={self.switch_at})")
                self._to_lbfgs_dtype()
            loss = self._lbfgs_step(closure)
        self.taken += 1
        return loss

    def _lbfgs_step(self, closure: Callable[[], torch.Tensor]) -> torch.Tensor:
        iterations, evaluations = self._counts()
        loss = self.lbfgs.step(closure)
        now_iterations, now_evaluations = self._counts()
        # a call ends at its budget of iterations or of loss evaluations, or else because
        # its search found no step (a zero step, an ascent direction): a stall
        if (now_iterations - iterations < self.lbfgs.defaults["max_iter"]
                and now_evaluations - evaluations < self.lbfgs.defaults["max_eval"]):
            self.lbfgs.state.clear()  # start again from a steepest-descent step
            self.restarts += 1
        return loss

    def _to_lbfgs_dtype(self) -> None:
        """The parameters in L-BFGS's precision, in place (the model, which holds the same
        parameters, then computes in it: dltrain.pinn.network casts its inputs to match)."""
        for p in self.lbfgs._params:
            if p.is_floating_point() and p.dtype != self.dtype:
                p.data = p.data.to(self.dtype)

    def _counts(self) -> tuple[int, int]:
        """(iterations, loss evaluations) of the L-BFGS history so far."""
        state = self.lbfgs.state.get(self.lbfgs._params[0], {})
        return int(state.get("n_iter", 0)), int(state.get("func_evals", 0))

    def state_dict(self) -> dict[str, Any]:
        d = super().state_dict()
        d["adam_lbfgs"] = {"taken": self.taken, "restarts": self.restarts,
                           "lbfgs": self.lbfgs.state_dict()}
        return d

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        d = dict(state_dict)
        extra = d.pop("adam_lbfgs")
        super().load_state_dict(d)
        self.taken, self.restarts = int(extra["taken"]), int(extra["restarts"])
        self.lbfgs.load_state_dict(extra["lbfgs"])


def switch_step(node: Mapping[str, Any], total_steps: int) -> dict[str, Any]:
    """The optim node with `switch_at` in steps: a fraction (0.97) is of the run's
    `total_steps`; a whole number is already steps. Other optimisers' nodes pass unchanged."""
    node = dict(node)
    at = node.get("switch_at")
    if isinstance(at, float) and 0 < at < 1:
        node["switch_at"] = int(at * total_steps)
    return node


def lbfgs_from(node: Mapping[str, Any], total_steps: int) -> int | None:
    """The first optimiser step L-BFGS takes under the optim node: optim=lbfgs's first,
    optim=adam_lbfgs's switch; None for an optimiser that never takes one."""
    target = str(node.get("_target_"))  # one of pinn.rules.LBFGS_TARGETS, or no L-BFGS
    if target == "torch.optim.LBFGS":
        return 0
    if target == f"{__name__}.AdamLBFGS":
        return int(switch_step(node, total_steps)["switch_at"])
    return None
