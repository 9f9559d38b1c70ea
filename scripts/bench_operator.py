#!/usr/bin/env python
"""dltrain's FNO against neuraloperator's, training steps per second side by side in one run.

The issue's reference: neuraloperator 2.0's `FNO(n_modes=(12, 12), hidden_channels=32,
in_channels=1, out_channels=1, n_layers=4)` with Adam and its LpLoss, batch 20, on 2 CPU
cores: 12.35 steps/s at 32x32 and 3.82 at 64x64.

The two libraries count modes differently. dltrain's `model.modes=m` keeps the frequencies
0..m-1 and -m..-1 of each axis (Li et al.'s `modes1`, `modes2`): 2m x m complex weights per
channel pair in 2-D. neuraloperator's `n_modes=(n, n)` is the total count of each axis, centred:
n x (n/2 + 1). So neuraloperator's (12, 12) keeps about the frequencies of dltrain's modes=6,
and dltrain's default modes=12 those of neuraloperator's (24, 24). Both pairs are timed.

Per pair and resolution, in turns within each round (so that a change of load hits both):
  - `model`: the bare models in the same hand-written step (zero_grad, forward, relative L2
    loss, backward, Adam step), random (B, 1, H, W) inputs and targets; `steps` timed steps
    after 3 untimed ones.
  - `dltrain`: the whole `dltrain` training loop (data=darcy at that resolution, loss=rel_l2,
    logging every 50 steps), in-process through `dltrain.train`, its summary's samples_per_s
    / batch (the training steps' own time: no validation, no start-up).
Reported: the median steps/s over the rounds, and the ratio dltrain / neuraloperator (median
of the per-round ratios, with min-max), with the load average during the run.

    python scripts/bench_operator.py                       # 32x32 and 64x64, 3 rounds
    python scripts/bench_operator.py --threads 1 --rounds 5
    python scripts/bench_operator.py --markdown docs/benchmarks.md   # append the table

neuraloperator is an optional dependency (`pip install 'dltrain[bench]'`); without it only
dltrain's numbers are measured. OMP_WAIT_POLICY=PASSIVE is set (before torch loads) unless
already set: on cores shared with other work, OpenMP's spinning threads otherwise wait on
each other and every number becomes noise (measured: 10x slower at 2 threads on a loaded box).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

BATCH, WIDTH, LAYERS = 20, 32, 4
PAIRS = [(6, 12), (12, 24)]  # (dltrain model.modes, neuraloperator n_modes per axis)


def relative_l2(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    err = (out - y).flatten(1)
    return (err.norm(dim=1) / y.flatten(1).norm(dim=1)).mean()


def ours(res: int, modes: int) -> torch.nn.Module:
    from dltrain.data.spec import DataSpec
    from dltrain.models.fno import FNO

    spec = DataSpec("darcy", "regression", "image", (1, res, res), num_outputs=res * res,
                    target_shape=(1, res, res))
    return FNO(spec, width=WIDTH, modes=modes, layers=LAYERS)


def theirs(n_modes: int) -> tuple[torch.nn.Module, object] | None:
    try:
        from neuralop.losses import LpLoss
        from neuralop.models import FNO
    except ImportError:
        return None
    model = FNO(n_modes=(n_modes, n_modes), hidden_channels=WIDTH, in_channels=1,
                out_channels=1, n_layers=LAYERS)
    return model, LpLoss(d=2, p=2)


def model_rate(model: torch.nn.Module, loss_fn, res: int, steps: int) -> float:
    """Training steps per second of `model` in a hand-written Adam loop on random fields."""
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, 1, res, res, generator=gen)
    y = torch.randn(BATCH, 1, res, res, generator=gen)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(3):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - start)


def dltrain_rate(res: int, modes: int, steps: int, root: Path, threads: int) -> float:
    """Steps per second of the `dltrain` training loop itself (summary's samples_per_s)."""
    import dltrain

    result = dltrain.train(
        "data=darcy", f"data.resolution={res}", "data.test_resolution=null",
        f"data.n_train={BATCH * (steps + 3) + 20}", "data.n_test=20", f"data.root={root}",
        f"data.batch_size={BATCH}", "model=fno", f"model.modes={modes}",
        f"model.width={WIDTH}", f"model.layers={LAYERS}", "loss=rel_l2", "optim.lr=0.001",
        "trainer.max_epochs=1", "trainer.device=cpu", f"trainer.threads={threads}",
        "logger=[]", run_dir=root / f"run_{res}_{modes}_{time.time_ns()}")
    if result.status != "completed":
        raise RuntimeError(f"dltrain run failed: {result.summary.get('error')}")
    return float(result.summary["samples_per_s"]) / BATCH


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--markdown", type=Path, help="append the table to this file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    have_theirs = theirs(12) is not None
    if not have_theirs:
        print("neuraloperator is not installed (pip install 'dltrain[bench]'): "
              "measuring dltrain only")
    rates: dict[tuple[int, int, str], list[float]] = {}
    loads = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for _ in range(args.rounds):
            for res in args.resolutions:
                for modes, n_modes in PAIRS:
                    loads.append(os.getloadavg()[0])
                    torch.manual_seed(0)
                    rates.setdefault((res, modes, "model"), []).append(
                        model_rate(ours(res, modes), relative_l2, res, args.steps))
                    if have_theirs:
                        torch.manual_seed(0)
                        model, loss = theirs(n_modes)
                        rates.setdefault((res, modes, "neuraloperator"), []).append(
                            model_rate(model, loss, res, args.steps))
                    rates.setdefault((res, modes, "dltrain"), []).append(
                        dltrain_rate(res, modes, args.steps, root, args.threads))
    lines = [f"torch {torch.__version__}, {args.threads} threads, batch {BATCH}, width {WIDTH}, "
             f"{LAYERS} layers, {args.steps} timed steps x {args.rounds} rounds; 1-min load "
             f"average {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} cores; "
             f"OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}", "",
             "| grid | dltrain modes / neuraloperator n_modes | neuraloperator FNO steps/s "
             "| dltrain FNO, same step loop | dltrain, whole training loop "
             "| ratio dltrain loop / neuraloperator |",
             "|---|---|---|---|---|---|"]
    for res in args.resolutions:
        for modes, n_modes in PAIRS:
            mine, loop = rates[(res, modes, "model")], rates[(res, modes, "dltrain")]
            other = rates.get((res, modes, "neuraloperator"))
            ratio = "n/a"
            if other:
                each = [a / b for a, b in zip(loop, other, strict=True)]
                ratio = f"{statistics.median(each):.2f}x ({min(each):.2f}-{max(each):.2f})"
            lines.append(f"| {res}x{res} | {modes} / ({n_modes}, {n_modes}) "
                         f"| {spread(other) if other else 'not installed'} | {spread(mine)} "
                         f"| {spread(loop)} | {ratio} |")
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        with args.markdown.open("a", encoding="utf-8") as f:
            f.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
