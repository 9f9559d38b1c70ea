#!/usr/bin/env python
"""dltrain against the tightest hand-written PyTorch loop, side by side in one run.

For each workload the two run alternately, each in a fresh process (so peak memory is each
one's own): the same model (built by dltrain's model classes), the same data tensors, batch
size, optimiser, number of steps, seed and threads. The hand-written loop is what a careful
engineer writes: tensors in memory, index slices of a per-epoch randperm,
`zero_grad(set_to_none=True)`, no logging, one host sync at the end. dltrain runs as users run
it, with its default logging (every 50 steps: console, metrics.jsonl, TensorBoard).

Reported: samples/s of each (median over repeats), the ratio dltrain / hand (median of the
pairwise ratios, with min-max), peak RSS of each process, start-up times of whole processes,
and fused Adam as a line of its own (it speeds up the hand-written loop too).

    python scripts/bench.py                      # every workload, 5 alternating pairs
    python scripts/bench.py --workloads moons_mlp --repeats 3
    python scripts/bench.py --markdown docs/benchmarks.md   # also write the tables there

`--sweep` measures something else: a whole sweep, `dltrain -m ...` as a user types it, with
Hydra's basic launcher (one job after the other) against `hydra/launcher=vectorised` (the jobs
trained as one stacked model), alternating, each a fresh process timed from start to exit. The
sweep is 8 seeds x 8 learning rates of an MLP on moons; every job must complete in both.

    python scripts/bench.py --sweep --repeats 3 --sweep-epochs 150 --markdown docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workload:
    """A training job, as dltrain overrides; the hand-written loop reads the same config."""

    name: str
    overrides: tuple[str, ...]
    steps: int
    fused_line: bool = False  # also measure both with Adam(fused=True)
    notes: str = ""
    extra: dict = field(default_factory=dict)


WORKLOADS = {
    w.name: w
    for w in (
        Workload("moons_mlp", ("data=moons", "data.n_train=20000", "data.batch_size=128",
                               "model=mlp"), steps=2000, fused_line=True,
                 notes="MLP 2-256-256-2, batch 128"),
        Workload("glyphs_mlp", ("data=glyphs", "data.batch_size=256", "model=mlp",
                                "model.hidden=[256]"), steps=600, fused_line=True,
                 notes="MLP 784-256-10, batch 256"),
        Workload("glyphs_cnn", ("data=glyphs", "data.batch_size=128", "model=cnn"), steps=150,
                 notes="the default CNN, batch 128"),
        Workload("char_transformer", ("data=text", "model=transformer", "model.depth=4",
                                      "model.width=128", "data.block_size=64",
                                      "data.batch_size=32"), steps=150,
                 notes="4 layers, d=128, block 64, batch 32, on 700 kB of English (pydoc topics)"),
    )
}


# --------------------------------------------------------------------------------------------
# Children: one measurement each, in a fresh process


def compose(overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from dltrain.cli import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        return hydra_compose("train", overrides=overrides)


def text_file() -> Path:
    """About 700 kB of real English: CPython's own help topics (pydoc_data), on every machine
    with Python, so the bench needs no network."""
    path = Path(tempfile.gettempdir()) / "dltrain-bench-text.txt"
    if not path.exists():
        from pydoc_data.topics import topics

        path.write_text("\n\n".join(topics[k] for k in sorted(topics)), encoding="utf-8")
    return path


def job_overrides(workload: Workload, steps: int, device: str, fused: bool) -> list[str]:
    overrides = [*workload.overrides, f"trainer.max_steps={steps}", "trainer.max_epochs=100000",
                 f"trainer.device={device}", "optim=adam", "trainer.val_every=100000"]
    if "data=text" in workload.overrides:
        overrides.append(f"data.path={text_file()}")
    if fused:
        overrides.append("+optim.fused=true")
    return overrides


def child_dltrain(workload: Workload, steps: int, device: str, fused: bool) -> dict:
    import contextlib
    import io

    from dltrain.run import run

    cfg = compose(job_overrides(workload, steps, device, fused))
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
        summary = run(cfg, Path(tmp) / "run").summary
    if summary["status"] != "completed":
        raise SystemExit(f"dltrain run failed: {summary.get('error')}")
    return {"samples_per_s": summary["samples_per_s"]}


def child_hand(workload: Workload, steps: int, device: str, fused: bool) -> dict:
    """The hand-written loop. Setup (data, model) uses dltrain's builders: what is timed is
    the loop alone, from the first step to a sync after the last (CUDA events on a GPU)."""
    import torch

    from dltrain.data import build_data
    from dltrain.losses import loss_spec
    from dltrain.models import build_model

    cfg = compose(job_overrides(workload, steps, device, fused=False))
    dev = torch.device(device)
    torch.manual_seed(int(cfg.trainer.seed))
    data = build_data(cfg.data, dev)
    model = build_model(cfg.model, cfg.init, loss_spec(cfg.loss, data.spec)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr),
                           **({"fused": True} if fused else {}))
    b = int(cfg.data.batch_size)
    loss_fn = torch.nn.functional.cross_entropy
    if data.tokens is not None:  # random windows of the token stream, targets shifted by one
        tokens, block = data.tokens, data.spec.input_shape[0]
        per_epoch = len(tokens) // (b * block)
        span = torch.arange(block, device=dev)

        def epoch_batches(g: torch.Generator):
            starts = torch.randint(0, len(tokens) - block, (per_epoch, b), generator=g).to(dev)
            for s in starts:
                idx = s[:, None] + span
                yield tokens[idx], tokens[idx + 1]
    else:
        x, y, n = data.train.x, data.train.y, len(data.train.x)

        def epoch_batches(g: torch.Generator):
            perm = torch.randperm(n, generator=g).to(dev)
            for i in range(n // b):
                idx = perm[i * b:(i + 1) * b]
                yield x[idx], y[idx]

    timer = Timer(dev)
    done, epoch = 0, 0
    while done < steps:
        for xb, yb in epoch_batches(torch.Generator().manual_seed(epoch)):
            out = model(xb)
            loss = loss_fn(out.flatten(0, -2), yb.flatten()) if out.ndim == 3 else loss_fn(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            done += 1
            if done == steps:
                break
        epoch += 1
    elapsed = timer.stop(loss)
    return {"samples_per_s": steps * b / elapsed}


class Timer:
    """Wall time of a stretch of work on `device`: CUDA events on a GPU, else perf_counter;
    ends with a host sync on the last result, so all queued work is counted."""

    def __init__(self, device) -> None:
        import torch

        self.cuda = device.type == "cuda"
        if self.cuda:
            self.start, self.end = (torch.cuda.Event(enable_timing=True) for _ in range(2))
            self.start.record()
        self.began = time.perf_counter()

    def stop(self, last) -> float:
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            return self.start.elapsed_time(self.end) / 1000
        last.item()
        return time.perf_counter() - self.began


def child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    workload = WORKLOADS[args.workload]
    measure = child_dltrain if args.child == "dltrain" else child_hand
    result = measure(workload, args.steps, args.device, args.fused)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------------------------
# The parent: alternate the children, aggregate, report


def spawn(kind: str, workload: str, steps: int, device: str, threads: int, fused: bool) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--workload", workload, "--steps",
           str(steps), "--device", device, "--threads", str(threads)]
    if fused:
        cmd.append("--fused")
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} {workload} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def compare(workload: Workload, repeats: int, device: str, threads: int, fused: bool,
            steps: int) -> dict:
    pairs = []
    for _ in range(repeats):  # alternating pairs: drifts in machine load hit both alike
        ours = spawn("dltrain", workload.name, steps, device, threads, fused)
        hand = spawn("hand", workload.name, steps, device, threads, fused)
        pairs.append((ours, hand))
        print(f"  {workload.name}{' fused' if fused else ''}: dltrain "
              f"{ours['samples_per_s']:.0f}/s  hand {hand['samples_per_s']:.0f}/s", flush=True)
    ratios = [o["samples_per_s"] / h["samples_per_s"] for o, h in pairs]
    rss = [o["peak_rss_mb"] / h["peak_rss_mb"] for o, h in pairs]
    return {
        "workload": workload.name + (" (fused Adam)" if fused else ""),
        "notes": workload.notes,
        "dltrain": statistics.median(o["samples_per_s"] for o, _ in pairs),
        "hand": statistics.median(h["samples_per_s"] for _, h in pairs),
        "ratio": spread(ratios),
        "ratio_median": statistics.median(ratios),
        "rss_dltrain": statistics.median(o["peak_rss_mb"] for o, _ in pairs),
        "rss_hand": statistics.median(h["peak_rss_mb"] for _, h in pairs),
        "rss_ratio": spread(rss),
        "steps": steps,
    }


def wall(cmd: list[str], repeats: int, cwd: Path) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=True, cwd=cwd)
        times.append(time.perf_counter() - start)
    return times


ONE_STEP = """
import torch
from hydra import compose, initialize_config_dir
from dltrain.cli import conf_dir
from dltrain.data import build_data
from dltrain.models import build_model
with initialize_config_dir(str(conf_dir()), version_base="1.3"):
    cfg = compose("train", overrides=["trainer=smoke"])
torch.manual_seed(0)
data = build_data(cfg.data)
model = build_model(cfg.model, cfg.init, data.spec)
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
x, y = data.train.x[:128], data.train.y[:128]
loss = torch.nn.functional.cross_entropy(model(x), y)
opt.zero_grad(set_to_none=True); loss.backward(); opt.step(); print(loss.item())
"""


def startup(repeats: int) -> list[dict]:
    dltrain = [sys.executable, "-m", "dltrain"]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("dltrain --help", wall([*dltrain, "--help"], repeats, Path(tmp))),
            ("dltrain list", wall([*dltrain, "list"], repeats, Path(tmp))),
            ("python -c 'import torch'", wall([sys.executable, "-c", "import torch"], repeats,
                                             Path(tmp))),
            ("hand-written loop, one step (glyphs MLP)",
             wall([sys.executable, "-c", ONE_STEP], repeats, Path(tmp))),
            ("dltrain trainer=smoke (20 steps, validation, test, all files)",
             wall([*dltrain, "trainer=smoke", f"hydra.run.dir={tmp}/smoke"], repeats,
                  Path(tmp))),
        ]
    return [{"what": what, "median_s": statistics.median(t), "min_s": min(t), "max_s": max(t)}
            for what, t in rows]


# --------------------------------------------------------------------------------------------
# --sweep: a whole sweep, the basic launcher against the vectorised one

SEEDS = tuple(range(8))
RATES = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05)


def sweep_overrides(hidden: str, epochs: int, threads: int | None) -> list[str]:
    overrides = ["data=moons", f"model.hidden={hidden}", f"trainer.max_epochs={epochs}",
                 "trainer.device=cpu", f"trainer.seed={','.join(map(str, SEEDS))}",
                 f"optim.lr={','.join(map(str, RATES))}"]
    return overrides + ([f"trainer.threads={threads}"] if threads else [])


def run_sweep(launcher: str, overrides: list[str], tmp: Path) -> float:
    """Seconds from the start of `dltrain -m ...` to its exit; every job must complete."""
    sweep = tmp / f"{launcher}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "dltrain", "-m", f"hydra/launcher={launcher}", *overrides,
           f"hydra.sweep.dir={sweep}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
    elapsed = time.perf_counter() - start
    summaries = [json.loads(p.read_text()) for p in sweep.glob("*/summary.json")]
    done = sum(s["status"] == "completed" for s in summaries)
    if proc.returncode != 0 or done != len(SEEDS) * len(RATES):
        raise SystemExit(f"the {launcher} sweep failed ({done} runs completed):\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed


def compare_sweeps(repeats: int, hidden: str, epochs: int, threads: int | None) -> dict:
    overrides = sweep_overrides(hidden, epochs, threads)
    pairs, loads = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeats):  # alternating, each first every other time
            loads.append(os.getloadavg()[0])
            order = ("basic", "vectorised") if i % 2 == 0 else ("vectorised", "basic")
            wall = {launcher: run_sweep(launcher, overrides, Path(tmp)) for launcher in order}
            loads.append(os.getloadavg()[0])
            pairs.append((wall["basic"], wall["vectorised"]))
            print(f"  sweep {i + 1}: basic {wall['basic']:.1f} s  vectorised "
                  f"{wall['vectorised']:.1f} s  ({wall['basic'] / wall['vectorised']:.1f}x)  "
                  f"load {loads[-2]:.2f} -> {loads[-1]:.2f}", flush=True)
    basic, vectorised = [b for b, _ in pairs], [v for _, v in pairs]
    return {"hidden": hidden, "epochs": epochs, "threads": threads, "basic": spread(basic),
            "vectorised": spread(vectorised), "ratio": spread([b / v for b, v in pairs]),
            "load": f"{min(loads):.2f}-{max(loads):.2f}", "repeats": repeats}


def sweep_markdown(result: dict, header: str) -> str:
    steps = result["epochs"] * 28  # 1800 training points in batches of 64
    threads = result["threads"] or "torch's default"
    return "\n".join([
        header, "",
        f"`dltrain -m data=moons model.hidden={result['hidden']} "
        f"trainer.max_epochs={result['epochs']} trainer.seed=0,...,7 optim.lr=<8 rates>` "
        f"(64 jobs of {steps} Adam steps each, batch 64; threads: {threads}), whole processes "
        "from start to exit, the report included.", "",
        "| launcher | wall s, median (min-max) |", "|---|---|",
        f"| basic (one job after the other) | {result['basic']} |",
        f"| vectorised (one stack of 64) | {result['vectorised']} |",
        f"| **speed-up, basic / vectorised** | **{result['ratio']}** |", "",
        f"1-minute load average over the measurements: {result['load']} "
        f"({result['repeats']} alternating pairs).", ""])


def device_line(device: str, threads: int) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{threads} torch threads (torch {torch.__version__})")


def markdown(results: list[dict], starts: list[dict], header: str) -> str:
    lines = [header, "",
             "| workload | dltrain samples/s | hand-written samples/s | ratio, median (min-max) "
             "| peak RSS dltrain / hand (MB) | RSS ratio |",
             "|---|---:|---:|---|---|---|"]
    for r in results:
        lines.append(f"| {r['workload']} — {r['notes']} | {r['dltrain']:.0f} | {r['hand']:.0f} "
                     f"| {r['ratio']} | {r['rss_dltrain']:.0f} / {r['rss_hand']:.0f} "
                     f"| {r['rss_ratio']} |")
    lines += ["", "| start-up, whole process | median s | min-max s |", "|---|---:|---|"]
    for s in starts:
        lines.append(f"| {s['what']} | {s['median_s']:.2f} | {s['min_s']:.2f}-{s['max_s']:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every workload's step count (e.g. 0.2 for a quick look)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-startup", action="store_true")
    parser.add_argument("--markdown", type=Path, help="append the tables to this file")
    parser.add_argument("--sweep", action="store_true",
                        help="time a 64-job sweep: the basic launcher against the vectorised one")
    parser.add_argument("--sweep-hidden", default="[32,32]", help="the MLP's layer widths")
    parser.add_argument("--sweep-epochs", type=int, default=150)
    parser.add_argument("--sweep-threads", type=int, default=None,
                        help="trainer.threads of every job (default: torch's own choice)")
    parser.add_argument("--child", choices=["dltrain", "hand"], help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fused", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    if args.sweep:
        result = compare_sweeps(args.repeats, args.sweep_hidden, args.sweep_epochs,
                                args.sweep_threads)
        header = (f"### {time.strftime('%Y-%m-%d')} · a sweep of 64 small runs · "
                  f"{device_line('cpu', args.sweep_threads or os.cpu_count() or 1)}")
        text = sweep_markdown(result, header)
        print()
        print(text)
        if args.markdown:
            with args.markdown.open("a") as f:
                f.write("\n" + text)
        return

    results = []
    for name in args.workloads.split(","):
        workload = WORKLOADS[name]
        steps = max(10, int(workload.steps * args.steps_scale))
        results.append(compare(workload, args.repeats, args.device, args.threads, False, steps))
        if workload.fused_line:
            results.append(compare(workload, args.repeats, args.device, args.threads, True,
                                   steps))
    starts = [] if args.no_startup else startup(args.repeats)
    header = (f"### {time.strftime('%Y-%m-%d')} · {device_line(args.device, args.threads)} · "
              f"{args.repeats} alternating pairs per line")
    text = markdown(results, starts, header)
    print()
    print(text)
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
