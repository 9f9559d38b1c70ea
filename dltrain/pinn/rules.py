"""The checks of a physics-informed run's keys (`pde.*`, optim=adam_lbfgs's), torch-free like
the rest of dltrain.config, which lists them among its RULES and COMBINATIONS."""

from __future__ import annotations

from typing import Any

from dltrain.rules import (
    PER_MEMBER,
    Rule,
    choice,
    integer,
    interval,
    number,
)

SAMPLINGS = ("uniform", "sobol", "lhs")
TERMS = ("residual", "boundary", "initial", "data")


def _numbers_by_name(v: Any) -> str | None:
    if isinstance(v, dict) and all(isinstance(x, int | float) and not isinstance(x, bool)
                                   for x in v.values()):
        return None
    return "must be a mapping of names to numbers, e.g. {nu: 0.01}"


def _intervals_by_name(v: Any) -> str | None:
    if isinstance(v, dict) and v and all(interval(x) is None for x in v.values()):
        return None
    return "must map every coordinate to [low, high] with low < high, e.g. {x: [-1, 1]}"


def _names(v: Any) -> str | None:
    if isinstance(v, list) and all(isinstance(x, str) and x for x in v):
        return None
    return "must be a list of coefficient names, e.g. [nu] (or [] for none)"


def _switch(v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "must be a whole number of steps >= 0, or a fraction of the run's steps in (0, 1)"
    if (isinstance(v, int) and v >= 0) or 0 < v < 1:
        return None
    return "must be a whole number of steps >= 0, or a fraction of the run's steps in (0, 1)"


def _grid(v: Any) -> str | None:
    if isinstance(v, dict) and v and all(isinstance(x, int) and not isinstance(x, bool)
                                         and x >= 2 for x in v.values()):
        return None
    return "must give every coordinate a whole number of grid points of at least 2, e.g. {x: 256}"


PDE_RULES: tuple[Rule, ...] = (
    Rule("pde.coefficients", _numbers_by_name),
    Rule("pde.domain", _intervals_by_name),
    Rule("pde.points.domain", integer(0)),
    Rule("pde.points.boundary", integer(0)),
    Rule("pde.points.initial", integer(0)),
    Rule("pde.sampling", choice(SAMPLINGS)),
    Rule("pde.resample_every", integer(0)),
    Rule("pde.lbfgs_resample_every", integer(0, optional=True)),
    *(Rule(f"pde.weights.{t}", number(0), PER_MEMBER) for t in TERMS),
    Rule("pde.learn", _names, alone=lambda v: None if not v else (
        f"pde.learn=[{','.join(map(str, v))}]: an inverse problem's learnt coefficients are "
        "not stacked (a stack trains forward problems that differ in seed, learning rate and "
        "loss weights)")),
    Rule("pde.guess", _numbers_by_name),
    Rule("pde.observations", integer(0)),
    Rule("pde.noise", number(0)),
    Rule("pde.eval", _grid),
    # optim=adam_lbfgs (dltrain/adam_lbfgs.py)
    Rule("optim.switch_at", _switch),
    Rule("optim.lbfgs_dtype", choice(("float32", "float64"))),
    Rule("optim.lbfgs.lr", number(0, lo_open=True)),
    Rule("optim.lbfgs.max_iter", integer(1)),
    Rule("optim.lbfgs.max_eval", integer(1)),
    Rule("optim.lbfgs.history_size", integer(1)),
    Rule("optim.lbfgs.line_search_fn", choice(("strong_wolfe",), optional=True)),
)


def pinn_combination(cfg: dict[str, Any]) -> str | None:
    """task=pinn and a pde go together; the pde's points replace the data group, and its
    weighted terms the loss group, so neither may be set (they would be ignored)."""
    task, pde = cfg.get("task"), cfg.get("pde")
    if pde is None:
        if task == "pinn":
            return ("task=pinn needs the equation to learn: add pde=poisson1d, heat1d, "
                    "burgers1d or helmholtz2d")
        return None
    if task != "pinn":
        return (f"pde={pde.get('name')} trains a physics-informed network, but task={task}; "
                "leave task out (the pde sets task=pinn)")
    loss = cfg.get("loss") or {}
    if loss.get("name") != "auto" or "_target_" in loss:
        return (f"loss={loss.get('name') or loss.get('_target_')} is not used by task=pinn, whose "
                "loss is the pde's weighted terms (pde.weights.residual, .boundary, .initial, "
                ".data); drop it")
    have = pde.get("coefficients") or {}
    for name in pde.get("learn") or []:
        if name not in have:
            return (f"pde.learn=[{name}]: pde={pde.get('name')} has no coefficient {name!r} "
                    f"(its coefficients: {', '.join(have) or 'none'})")
    missing = [n for n in (pde.get("learn") or []) if n not in (pde.get("guess") or {})]
    if missing:
        return (f"pde.learn=[{', '.join(missing)}] needs a first value in pde.guess, "
                f"e.g. pde.guess.{missing[0]}=0.1")
    return None


def data_overrides(task: Any, overrides: list[str]) -> str | None:
    """task=pinn trains on its pde's points: a data=... or data.KEY=... on the command line
    would be ignored, so it is refused (None: nothing to refuse)."""
    if task != "pinn":
        return None
    for line in overrides:
        key = line.lstrip("+~").partition("=")[0]
        if key == "data" or key.startswith("data."):
            return (f"{line} is not used by task=pinn, which trains on the points of its pde "
                    "(pde.points.domain, .boundary, .initial); drop it")
    return None


# the optimisers that take L-BFGS steps (dltrain.adam_lbfgs.lbfgs_from says from which step)
LBFGS_TARGETS = ("torch.optim.LBFGS", "dltrain.adam_lbfgs.AdamLBFGS")


def lbfgs_overrides(optim: Any, overrides: list[str]) -> str | None:
    """pde.lbfgs_resample_every set on the command line for an optimiser that never takes an
    L-BFGS step would be ignored, so it is refused (None: nothing to refuse). A pde's own
    default is not refused: it waits for an L-BFGS phase that this run does not have."""
    optim = optim or {}
    if optim.get("_target_") in LBFGS_TARGETS:
        return None
    for line in overrides:
        if line.lstrip("+~").partition("=")[0] == "pde.lbfgs_resample_every":
            return (f"{line} acts once L-BFGS steps, but optim={optim.get('name')} takes no "
                    "L-BFGS step; use optim=adam_lbfgs, or drop it")
    return None
