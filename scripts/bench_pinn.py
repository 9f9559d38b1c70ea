"""Physics-informed training speed: dltrain's burgers1d against DeepXDE's own Burgers example.

    python scripts/bench_pinn.py [--repeats 3] [--steps 3000] [--threads 2]

Both train the same problem the same way, in child processes that take turns: a 3 x 20 tanh
network on 2540 domain, 80 boundary and 160 initial points, Adam at 1e-3 in float32, full
batch, on one draw of points. dltrain runs `pde=burgers1d optim=adam sched=none
pde.resample_every=0` (its step loop's own throughput from
summary.json: samples/s over the points of a step); DeepXDE 1.15 (PyTorch backend,
`pip install 'dltrain[bench]'`) runs the code of its examples/pinn_forward/Burgers.py, timed
around `model.train` (its test-loss display every 1000 iterations included, as its users run
it). Prints the medians and their ratio; `--markdown` the rows of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POINTS = 2540 + 80 + 160


def child_dltrain(steps: int) -> float:
    from hydra import compose, initialize_config_dir

    from dltrain.cli import CONFIG_NAME, conf_dir
    from dltrain.run import run

    # one draw of points, as DeepXDE's example trains on (burgers1d's default redraws them)
    overrides = ["pde=burgers1d", "model.depth=3", "optim=adam", "optim.lr=0.001", "sched=none",
                 "pde.resample_every=0",
                 f"trainer.max_epochs={steps}", f"trainer.val_every={steps}",
                 "trainer.log_every=1000", "trainer.device=cpu", "logger=[]"]
    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name="train"):
        cfg = compose(CONFIG_NAME, overrides=overrides)
    with tempfile.TemporaryDirectory() as tmp:
        result = run(cfg, Path(tmp) / "run")
    assert result.status == "completed", result.summary.get("error")
    return result.summary["samples_per_s"] / POINTS


def child_deepxde(steps: int) -> float:
    os.environ["DDE_BACKEND"] = "pytorch"
    import deepxde as dde
    import numpy as np

    def pde(x, y):  # DeepXDE's examples/pinn_forward/Burgers.py
        dy_x = dde.grad.jacobian(y, x, i=0, j=0)
        dy_t = dde.grad.jacobian(y, x, i=0, j=1)
        dy_xx = dde.grad.hessian(y, x, i=0, j=0)
        return dy_t + y * dy_x - 0.01 / np.pi * dy_xx

    geom = dde.geometry.Interval(-1, 1)
    timedomain = dde.geometry.TimeDomain(0, 0.99)
    geomtime = dde.geometry.GeometryXTime(geom, timedomain)
    bc = dde.icbc.DirichletBC(geomtime, lambda x: 0, lambda _, on_boundary: on_boundary)
    ic = dde.icbc.IC(geomtime, lambda x: -np.sin(np.pi * x[:, 0:1]),
                     lambda _, on_initial: on_initial)
    data = dde.data.TimePDE(geomtime, pde, [bc, ic], num_domain=2540, num_boundary=80,
                            num_initial=160)
    net = dde.nn.FNN([2] + [20] * 3 + [1], "tanh", "Glorot normal")
    model = dde.Model(data, net)
    model.compile("adam", lr=1e-3)
    start = time.perf_counter()
    model.train(iterations=steps, display_every=1000)
    return steps / (time.perf_counter() - start)


def spawn(kind: str, steps: int, threads: int) -> float:
    cmd = [sys.executable, __file__, "--child", kind, "--steps", str(steps),
           "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return float(json.loads(lines[-1][len("RESULT "):]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["dltrain", "deepxde"])
    parser.add_argument("--steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        rate = child_dltrain(args.steps) if args.child == "dltrain" else \
            child_deepxde(args.steps)
        print("RESULT " + json.dumps(rate))
        return
    names = ["dltrain", "deepxde"]
    rounds = []
    for i in range(args.repeats):  # each round starts one later: drift hits both alike
        order = names[i % 2:] + names[:i % 2]
        rounds.append({n: spawn(n, args.steps, args.threads) for n in order})
        print(f"round {i + 1}: " + "  ".join(f"{n} {rounds[-1][n]:.0f} steps/s" for n in names),
              flush=True)
    medians = {n: statistics.median(r[n] for r in rounds) for n in names}
    ratios = [r["dltrain"] / r["deepxde"] for r in rounds]
    line = (f"burgers1d, 3x20 tanh, 2780 points, Adam float32, {args.steps} steps, "
            f"{args.threads} threads, {args.repeats} rounds: dltrain {medians['dltrain']:.0f} "
            f"steps/s, DeepXDE {medians['deepxde']:.0f} steps/s, ratio "
            f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f})")
    print(line)
    if args.markdown:
        print(f"| burgers1d Adam steps/s | {medians['dltrain']:.0f} | {medians['deepxde']:.0f} | "
              f"{statistics.median(ratios):.2f} ({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
