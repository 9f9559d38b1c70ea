"""Signals at random moments, then resume: does every run end with the weights it would have
had without the interruption?

    python scripts/torture.py --trials 100            # all configs, in turns
    python scripts/torture.py --trials 20 --configs dropout,streamed --seed 3

Each config is first run once uninterrupted (the reference). A trial starts the same command,
sends it a signal at a random moment of the reference's process time (SIGTERM, SIGINT, two
SIGINTs a moment apart, or SIGKILL), then `dltrain resume RUN_DIR` until the run completes
(at most three resumes), and compares the final checkpoints/last.pt and best.pt with the
reference's, tensor by tensor (torch.equal), and the test metrics of summary.json. Besides,
every process's exit code must agree with the summary.json it left (0 completed, 130
interrupted, 1 failed or diverged; a SIGKILLed process leaves what it had). A command stopped
before its run began (exit 130 or killed, no run folder yet) is given again.

A trial is
  exact      completed, every tensor and test metric equal to the reference's;
  inexact    completed with other weights or metrics (a resume that is not exact);
  lost       never completed (a resume refused or failed), or an exit code that contradicts
             the summary (a run that says one thing and does another).
The script prints one line a trial and then trials / exact / inexact / lost per config, and
exits 1 if any trial was not exact. Every run is on the CPU with TensorBoard off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

RESUMES = 3  # resumes a trial may take before its run counts as lost
EXIT_STATUS = {0: {"completed"}, 1: {"failed", "diverged"}, 130: {"interrupted"}}


@dataclass(frozen=True)
class Config:
    name: str
    overrides: tuple[str, ...]


def configs(arrays: Path) -> list[Config]:
    """Small runs of a few seconds, each exercising what a resume must put back."""
    moons = ("data=moons", "model=mlp", "trainer.max_epochs=5", "data.n_train=2000")
    streamed = ("data=arrays", f"data.path={arrays / 'x.npy'}", f"data.y_path={arrays / 'y.npy'}",
                "data.in_memory=false", "model=mlp", "trainer.max_epochs=4")
    return [
        Config("in_memory", moons),
        Config("dropout", (*moons, "model.dropout=0.2")),
        Config("streamed", (*streamed, "data.workers=0")),
        Config("streamed_dropout_workers", (*streamed, "model.dropout=0.2", "data.workers=2")),
        Config("lbfgs", (*moons, "optim=lbfgs", "trainer.max_epochs=3")),
        Config("accumulate", (*moons, "trainer.accumulate=2")),
        Config("probes", (*moons, "probe=[gradients,activations,boundary]", "probe.every=20")),
    ]


def write_arrays(folder: Path) -> Path:
    """x.npy and y.npy of 3,000 two-class samples of 8 features in `folder`: the streamed
    configs read x from a memory map."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3000, 8)).astype(np.float32)
    np.save(folder / "x.npy", x)
    np.save(folder / "y.npy", (x[:, 0] * x[:, 1] + 0.3 * x[:, 2] > 0).astype(np.int64))
    return folder


def command(config: Config, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "dltrain", *config.overrides, "trainer.device=cpu",
            "logger=[]", f"hydra.run.dir={run_dir}"]


def resume_command(run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "dltrain", "resume", str(run_dir)]


def summary(run_dir: Path) -> dict:
    path = run_dir / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def agrees(code: int, run_dir: Path, killed: bool) -> bool:
    """The exit code says what summary.json says (a SIGKILLed process: nothing to check)."""
    if killed:
        return True
    return summary(run_dir).get("status") in EXIT_STATUS.get(code, set())


def weights(run_dir: Path) -> dict[str, dict[str, torch.Tensor]]:
    out = {}
    for name in ("last.pt", "best.pt"):
        payload = torch.load(run_dir / "checkpoints" / name, map_location="cpu",
                             weights_only=True)
        out[name] = payload["model"]
    return out


def same(a: dict, b: dict) -> bool:
    return all(a[f].keys() == b[f].keys() and all(torch.equal(a[f][k], b[f][k]) for k in a[f])
               for f in a)


@dataclass
class Reference:
    weights: dict
    test: dict
    seconds: float


def reference(config: Config, folder: Path) -> Reference:
    run_dir = folder / f"ref-{config.name}"
    started = time.perf_counter()
    proc = subprocess.run(command(config, run_dir), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"the reference run of {config.name} failed:\n{proc.stderr[-2000:]}")
    return Reference(weights(run_dir), summary(run_dir)["test"], seconds)


def interrupt(proc: subprocess.Popen, how: str, rng: random.Random) -> None:
    if how == "SIGINT x2":
        proc.send_signal(signal.SIGINT)
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGINT)
    else:
        proc.send_signal(getattr(signal, how))


def trial(config: Config, ref: Reference, run_dir: Path, rng: random.Random) -> tuple[str, str]:
    """(outcome, what happened) of one interrupted and resumed run."""
    how = rng.choice(["SIGTERM", "SIGINT", "SIGINT x2", "SIGKILL"])
    at = rng.uniform(0.0, ref.seconds * 1.05)
    proc = subprocess.Popen(command(config, run_dir), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(at)
    if proc.poll() is None:
        interrupt(proc, how, rng)
    _, err = proc.communicate()
    code = proc.returncode
    story = f"{how} at {at:.2f} s -> exit {code}"
    if (code == 130 or how == "SIGKILL") and not (run_dir / ".hydra").is_dir():
        # stopped before its run began (imports, the config check): no folder, nothing to
        # resume; the command is simply given again, as a user would
        again = subprocess.run(command(config, run_dir), capture_output=True, text=True,
                               check=False)
        story += f" before the run began; again -> exit {again.returncode}"
        code, err, how = again.returncode, again.stderr, "again"
    if not agrees(code, run_dir, how == "SIGKILL"):
        return "lost", f"{story}, but summary.json says {summary(run_dir).get('status')}"
    if "Traceback" in err:
        return "lost", f"{story} with a traceback: {err.strip().splitlines()[-1][:160]}"
    for _ in range(RESUMES):
        if summary(run_dir).get("status") == "completed":
            break
        done = subprocess.run(resume_command(run_dir), capture_output=True, text=True,
                              check=False)
        story += f"; resume -> exit {done.returncode}"
        if not agrees(done.returncode, run_dir, False) or done.returncode not in (0, 130):
            last = (done.stderr.strip().splitlines() or [""])[-1][:200]
            return "lost", f"{story}: {last}"
    if summary(run_dir).get("status") != "completed":
        return "lost", f"{story}; not completed after {RESUMES} resumes"
    if not same(weights(run_dir), ref.weights) or summary(run_dir).get("test") != ref.test:
        return "inexact", story
    return "exact", story


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--configs", default="", help="comma-separated names (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="dltrain-torture-") as tmp:
        folder = Path(tmp)
        chosen = [c for c in configs(write_arrays(folder))
                  if not args.configs or c.name in args.configs.split(",")]
        if not chosen:
            raise SystemExit(f"no config named {args.configs}")
        refs = {}
        for config in chosen:
            refs[config.name] = reference(config, folder)
            print(f"reference {config.name}: {refs[config.name].seconds:.1f} s", flush=True)
        counts: dict[str, Counter] = {c.name: Counter() for c in chosen}
        for i in range(args.trials):
            config = chosen[i % len(chosen)]
            outcome, story = trial(config, refs[config.name], folder / f"trial-{i}", rng)
            counts[config.name][outcome] += 1
            print(f"{i + 1:4d} {config.name:26s} {outcome:8s} {story}", flush=True)
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, seed {args.seed}")
    print(f"{'config':26s} trials exact inexact lost")
    total: Counter = Counter()
    for name, c in counts.items():
        total.update(c)
        print(f"{name:26s} {sum(c.values()):6d} {c['exact']:5d} {c['inexact']:7d} {c['lost']:4d}")
    print(f"{'all':26s} {sum(total.values()):6d} {total['exact']:5d} {total['inexact']:7d} "
          f"{total['lost']:4d}")
    return 0 if total["exact"] == sum(total.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
