"""Operator data: pairs of functions (an input field, the PDE's solution) generated offline by
the solvers of this package and cached under data.root (cache.py).

`data=darcy` (2-D: permeability -> pressure) and `data=burgers_operator` (1-D: initial
condition -> solution at t = 1). The training pool has `data.n_train` samples at
`data.resolution`; the test split holds `data.n_test` other samples (drawn from the test seed,
whatever data.seed is) at that resolution and, when `data.test_resolution` differs, the same
samples at that resolution too (`OperatorData.resolutions`): zero-shot super-resolution, since
the inputs and targets are samples of the same functions on a finer grid.

Inputs are standardised per channel with the train split's statistics (a scalar per channel,
so the same at any resolution); targets are divided by their root mean square (no shift), so
that a relative error is the same in training units and in the data's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from dltrain.data.memory import refuse_unless_room
from dltrain.data.operators import burgers, darcy
from dltrain.data.operators.cache import Draw, Drawn, Pairs, cached
from dltrain.data.prepare import n_validation, standardise
from dltrain.data.spec import TEST_SEED, Data, DataSpec, Split, TargetScale
from dltrain.errors import ConfigError


@dataclass
class OperatorData(Data):
    """Data with the test samples at other resolutions too: label ("64x64") -> split."""

    resolutions: dict[str, Split] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """A PDE's data set: its solver's `generate(n, generator, resolutions, **params)`."""

    name: str
    kind: str  # "signal" (1, L) or "image" (1, H, W)
    generate: Callable[..., Pairs]
    params: tuple[str, ...] = ()  # data.* keys of its physics, handed to `generate`

    def label(self, res: int) -> str:
        return f"{res}x{res}" if self.kind == "image" else str(res)

    def bytes_a_sample(self, res: int) -> int:
        points = res * res if self.kind == "image" else res
        return 2 * 4 * points  # input and target, float32


DARCY = Problem("darcy", "image", lambda n, gen, res: darcy.generate(n, gen, res))
BURGERS = Problem("burgers_operator", "signal",
                  lambda n, gen, res, viscosity: burgers.generate(n, gen, res, viscosity),
                  ("viscosity",))


def target_scale(y: torch.Tensor) -> TargetScale:
    """Per channel: no shift, the root mean square of the training targets."""
    dims = tuple(d for d in range(y.ndim) if d != 1)
    rms = y.double().square().mean(dim=dims, keepdim=True).sqrt().float().clamp_min(1e-12)
    return TargetScale(torch.zeros_like(rms), rms)


@dataclass(frozen=True)
class OperatorSource:
    """data=darcy, data=burgers_operator: generate (or read from the cache), split, scale."""

    problem: Problem

    def _check(self, cfg: Mapping[str, Any], device: torch.device | str) -> None:
        res, test_res = int(cfg["resolution"]), cfg["test_resolution"]
        n_train, n_test = int(cfg["n_train"]), int(cfg["n_test"])
        each = self.problem.bytes_a_sample(res)
        extra = self.problem.bytes_a_sample(int(test_res)) * n_test if test_res else 0
        # the solver's float64 working arrays: a few copies of a draw at a time
        need = each * (n_train + n_test) + extra
        refuse_unless_room(need, f"data={cfg['name']} at data.resolution={res}", device,
                           "use a smaller data.n_train or data.resolution",
                           host=8 * max(each * n_train, each * n_test + extra))

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        self._check(cfg, device)
        problem = self.problem
        res = int(cfg["resolution"])
        test_res = int(cfg["test_resolution"]) if cfg["test_resolution"] else res
        root = Path(str(cfg["root"])).expanduser()
        params = {k: cfg[k] for k in problem.params}
        n_train, n_test = int(cfg["n_train"]), int(cfg["n_test"])

        def draw(n: int, seed: int, resolutions: tuple[int, ...]) -> Drawn:
            return cached(Draw(problem.name, params, n, seed, resolutions), root,
                          lambda gen: problem.generate(n, gen, list(resolutions), **params))

        start = time.perf_counter()
        try:
            pool = draw(n_train, int(cfg["seed"]), (res,))
            test = draw(n_test, TEST_SEED, tuple(sorted({res, test_res})))
        except OSError as err:
            raise ConfigError(f"data.root={cfg['root']}: the generated data cannot be cached "
                              f"there ({err}); use data.root=A_WRITABLE_FOLDER.") from None
        x_pool, y_pool = pool.pairs[res]
        n_val = n_validation(n_train, float(cfg["val_fraction"]), f"data.n_train={n_train}")
        mean, std = standardise(x_pool[:-n_val], problem.kind)
        scale = target_scale(y_pool[:-n_val])

        def split(x: torch.Tensor, y: torch.Tensor) -> Split:
            # new tensors (the cached ones stay as read): standardised inputs, scaled targets
            return Split(((x - mean) / std).to(device), (y / scale.std).to(device))

        train = split(x_pool[:-n_val], y_pool[:-n_val])
        val = split(x_pool[-n_val:], y_pool[-n_val:])
        tests = {problem.label(r): split(*test.pairs[r]) for r in test.pairs}
        spec = DataSpec(name=str(cfg["name"]), task="regression", kind=problem.kind,
                        input_shape=tuple(train.x.shape[1:]),
                        num_outputs=int(train.y[0].numel()),
                        target_shape=tuple(train.y.shape[1:]))
        # how long the solvers took (when the files were written, for a cached draw), and how
        # long this run took to have the data (generated, or read from the cache)
        facts = {"generation": {
            "generated_s": round(pool.generated_s + test.generated_s, 2),
            "cached": pool.cached and test.cached,
            "took_s": round(time.perf_counter() - start, 2),
            "files": [str(pool.path), str(test.path)],
            "resolution": problem.label(res),
            "test_resolutions": list(tests)}}
        return OperatorData(train, val, tests[problem.label(res)], spec=spec,
                            norm={"mean": mean.flatten().tolist(),
                                  "std": std.flatten().tolist()},
                            target_scale=scale, facts=facts,
                            resolutions={k: v for k, v in tests.items()
                                         if k != problem.label(res)})


SOURCES = {"darcy": OperatorSource(DARCY), "burgers_operator": OperatorSource(BURGERS)}
