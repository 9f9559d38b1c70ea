#!/usr/bin/env python
"""dltrain against the tightest hand-written PyTorch loop, side by side in one run.

For each workload dltrain and the references run in turn, each in a fresh process (so peak
memory is each one's own): the same model (built by dltrain's model classes), the same data
tensors, batch size, optimiser, number of steps, seed and threads. The hand-written loop is
what a careful engineer writes: tensors in memory, index slices of a per-epoch randperm,
`zero_grad(set_to_none=True)`, no logging, one host sync at the end; on the small models it
runs twice, with plain Adam and with fused Adam (`Adam(fused=True)`, the kernel dltrain picks
by default wherever torch has one). dltrain runs as users run it, with its default logging
(every 50 steps: console, metrics.jsonl, TensorBoard).

Reported: samples/s and steps/s of each (median over repeats), the ratio dltrain / reference
(median of the per-round ratios, with min-max), peak RSS of each process, and the 1-minute
load average over the measurement.

    python scripts/bench.py                      # every throughput workload, then start-up
    python scripts/bench.py --workloads moons_mlp_small --repeats 5
    python scripts/bench.py --workloads startup  # whole processes: --help, trainer=smoke, ...
    python scripts/bench.py --workloads sweep32  # 32 short jobs: basic vs vectorised launcher
    python scripts/bench.py --workloads pinn16_poisson,pinn16_burgers  # 16 PINN seeds, the same
    python scripts/bench.py --workloads table_load,table_train  # the user's own files
    python scripts/bench.py --workloads predict  # dltrain predict on a 100,000-row table
    python scripts/bench.py --workloads char_lstm  # model=rnn: a 2-layer LSTM language model
    python scripts/bench.py --markdown docs/benchmarks.md   # also append the tables there

`startup` times whole processes from start to exit, in turns: `dltrain --help`, `dltrain
list`, `import torch`, a hand-written process that composes the smoke config and takes one
step, and `dltrain trainer=smoke` (20 steps, validation, test, every file).

`table_load` reads a 1,000,000 x 20 table (19 float features and a float target), written
once as CSV and as Parquet in the temporary folder, into training tensors with dltrain's
table reader (`build_data` of `data=table`: read, split, standardise, tensors), in turns with
pandas' own `read_csv` (its default engine, and engine="pyarrow") and `read_parquet` of the
same file, each in the same process after a first untimed read (a warm file cache for all).
`table_train` trains on a 200,000-row Parquet table (`data=table`) against the hand-written
loop on the same tensors given directly.

`predict` times `dltrain predict RUN table.csv --out pred.csv` on a 100,000 x 20 CSV (an MLP
trained on the same columns first, trainer=smoke), in turns with the hand-written equivalent:
pandas' read_csv, the features normalised by the run's statistics, the same model called
directly in a loop over batches of the same size, the target un-standardised, the table with
its prediction written by pandas' to_csv. Both in one process after a first untimed round;
the whole `dltrain predict` process is timed too, and its start-up (imports, the checkpoint)
is stated apart: the process's wall time less the in-process time.

`sweep32` and `sweep64` time a whole sweep, `dltrain -m ...` as a user types it, with Hydra's
basic launcher (one job after the other) against `hydra/launcher=vectorised` (the jobs trained
as one stacked model), in turns, each a fresh process from start to exit. The sweep is seeds x
8 learning rates of an MLP on moons (sweep32: 4 seeds, 5 epochs; sweep64: 8 seeds, 150
epochs); every job must complete in both. `pinn16_poisson` and `pinn16_burgers` do the same
for 16 seeds of a physics-informed network under Adam (poisson1d's 66 points; DeepXDE's
Burgers example, 2780 points drawn anew every step). Each is also run with half the seeds: the
difference is what the extra jobs cost without the costs every process pays once (start-up,
composing the first config, the report), which gives the speed-up per job.
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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Workload:
    """A training job, as dltrain overrides; the hand-written loop reads the same config."""

    name: str
    overrides: tuple[str, ...]
    steps: int
    fused_reference: bool = False  # also time the hand-written loop with Adam(fused=True)
    notes: str = ""


WORKLOADS = {
    w.name: w
    for w in (
        Workload("moons_mlp_small", ("data=moons", "data.n_train=20000", "data.batch_size=128",
                                     "model=mlp", "model.hidden=[64,64]"), steps=3000,
                 fused_reference=True, notes="MLP 2-64-64-2, batch 128"),
        Workload("moons_mlp", ("data=moons", "data.n_train=20000", "data.batch_size=128",
                               "model=mlp"), steps=2000, fused_reference=True,
                 notes="MLP 2-256-256-2, batch 128"),
        Workload("glyphs_mlp", ("data=glyphs", "data.batch_size=256", "model=mlp",
                                "model.hidden=[256]"), steps=600, fused_reference=True,
                 notes="MLP 784-256-10, batch 256"),
        Workload("glyphs_cnn", ("data=glyphs", "data.batch_size=128", "model=cnn"), steps=150,
                 notes="the default CNN, batch 128"),
        Workload("char_transformer", ("data=text", "model=transformer", "model.depth=4",
                                      "model.width=128", "data.block_size=64",
                                      "data.batch_size=32"), steps=150,
                 notes="4 layers, d=128, block 64, batch 32, on 700 kB of English (pydoc topics)"),
        Workload("char_lstm", ("data=text", "model=rnn", "model.cell=lstm", "model.layers=2",
                               "model.hidden_size=256", "data.block_size=64",
                               "data.batch_size=32"), steps=60,
                 notes="LSTM, 2 layers of 256, block 64, batch 32, on the same text"),
        Workload("table_train", ("data=table", "data.target=label", "data.batch_size=128",
                                 "model=mlp"), steps=2000, fused_reference=True,
                 notes="data=table: 200,000 x 20 Parquet, MLP 20-256-256-2, batch 128"),
    )
}


@dataclass(frozen=True)
class Sweep:
    """A sweep of `seeds` seeds x `rates` of a job (`job`: its overrides), `epochs` each."""

    name: str
    seeds: int
    epochs: int
    hidden: str | None = "[32,32]"  # the MLP's widths (--sweep-hidden); None: the job's model
    job: tuple[str, ...] = ("data=moons",)
    rates: tuple[float, ...] = ()  # optim.lr values (every seed with every rate)
    steps_per_epoch: int = 28  # moons: 1800 training points in batches of 64
    what: str = "batch 64"

    @property
    def jobs(self) -> int:
        return self.seeds * max(len(self.rates), 1)

    def overrides(self, seeds: int, threads: int | None) -> list[str]:
        """The sweep's command line with its first `seeds` seeds."""
        lines = [*self.job, f"trainer.max_epochs={self.epochs}", "trainer.device=cpu",
                 f"trainer.seed={','.join(map(str, range(seeds)))}"]
        lines += [f"model.hidden={self.hidden}"] if self.hidden else []
        lines += [f"optim.lr={','.join(map(str, self.rates))}"] if self.rates else []
        return lines + ([f"trainer.threads={threads}"] if threads else [])


RATES = (0.001, 0.002, 0.003, 0.005, 0.01, 0.02, 0.03, 0.05)
# physics-informed seeds (issue 23): Adam only (L-BFGS's line search is not stacked); a small
# problem (poisson1d: 66 points, where a step is mostly dispatch) and DeepXDE's Burgers
# example (2780 points, where a step is mostly arithmetic)
PINN = ("optim=adam", "sched=none")
SWEEPS = {s.name: s for s in (
    Sweep("sweep32", seeds=4, epochs=5, rates=RATES),
    Sweep("sweep64", seeds=8, epochs=150, rates=RATES),
    Sweep("pinn16_poisson", seeds=16, epochs=2000, hidden=None, steps_per_epoch=1,
          job=("pde=poisson1d", *PINN),
          what="pde=poisson1d: 3 x 20 tanh on 66 points, Adam, full batch"),
    Sweep("pinn16_burgers", seeds=16, epochs=300, hidden=None, steps_per_epoch=1,
          job=("pde=burgers1d", "model.depth=3", *PINN),
          what="pde=burgers1d: 3 x 20 tanh on 2780 points drawn anew every step, Adam"),
)}


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


def table_file(rows: int, suffix: str, target: str = "y") -> Path:
    """A table of `rows` x 20 in the temporary folder (written once, then reused): 19 float
    features and the target, `y` (float: a linear map) or `label` (two classes)."""
    path = Path(tempfile.gettempdir()) / f"dltrain-bench-table-{rows}-{target}{suffix}"
    if not path.exists():
        import numpy as np
        import pandas as pd

        rng = np.random.default_rng(0)
        x = rng.standard_normal((rows, 19)).astype(np.float32)
        frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(19)])
        frame[target] = ((x[:, 0] * x[:, 1] > 0).astype(np.int64) if target == "label"
                         else x @ rng.standard_normal(19).astype(np.float32))
        if suffix == ".csv":
            frame.to_csv(path, index=False)
        else:
            frame.to_parquet(path, index=False)
    return path


def job_overrides(workload: Workload, steps: int, device: str) -> list[str]:
    """dltrain's config of `workload`: optim=adam as the config leaves it (fused kernels
    wherever torch has them), no validation before the end."""
    overrides = [*workload.overrides, f"trainer.max_steps={steps}", "trainer.max_epochs=100000",
                 f"trainer.device={device}", "optim=adam", "trainer.val_every=100000"]
    if "data=text" in workload.overrides:
        overrides.append(f"data.path={text_file()}")
    if "data=table" in workload.overrides:
        overrides.append(f"data.path={table_file(200_000, '.parquet', 'label')}")
    return overrides


def child_dltrain(workload: Workload, steps: int, device: str) -> dict:
    import contextlib
    import io

    from dltrain.run import run

    cfg = compose(job_overrides(workload, steps, device))
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

    cfg = compose(job_overrides(workload, steps, device))
    dev = torch.device(device)
    torch.manual_seed(int(cfg.trainer.seed))
    data = build_data(cfg.data, dev)
    model = build_model(cfg.model, cfg.init, loss_spec(cfg.loss, data.spec)).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=float(cfg.optim.lr), fused=fused)
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
    if args.child == "dltrain":
        result = child_dltrain(workload, args.steps, args.device)
    else:
        result = child_hand(workload, args.steps, args.device, args.child == "hand_fused")
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


# --------------------------------------------------------------------------------------------
# The parent: take turns, aggregate, report

# who runs a throughput workload: dltrain and the hand-written loops it is measured against
CONTENDERS = {"dltrain": "dltrain", "hand": "hand-written, Adam",
              "hand_fused": "hand-written, Adam(fused=True)"}


def spawn(kind: str, workload: str, steps: int, device: str, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--workload", workload, "--steps",
           str(steps), "--device", device, "--threads", str(threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{kind} {workload} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def spread(values: list[float], digits: int = 3) -> str:
    return (f"{statistics.median(values):.{digits}f} "
            f"({min(values):.{digits}f}-{max(values):.{digits}f})")


def in_turns(names: list[str], repeats: int, measure) -> list[dict[str, Any]]:
    """`measure(name)` for every name, `repeats` rounds; each round starts one later in the
    list, so a drift in the machine's load hits every contender alike."""
    rounds = []
    for i in range(repeats):
        order = names[i % len(names):] + names[:i % len(names)]
        rounds.append({name: measure(name) for name in order})
    return rounds


def compare(workload: Workload, repeats: int, device: str, threads: int, steps: int) -> dict:
    kinds = ["dltrain", "hand"] + (["hand_fused"] if workload.fused_reference else [])
    loads = [os.getloadavg()[0]]

    def measure(kind: str) -> dict:
        result = spawn(kind, workload.name, steps, device, threads)
        loads.append(os.getloadavg()[0])
        return result

    rounds = in_turns(kinds, repeats, measure)
    for r in rounds:
        print(f"  {workload.name}: " + "  ".join(
            f"{k} {r[k]['samples_per_s']:.0f}/s" for k in kinds), flush=True)
    batch = int(next(o.split("=")[1] for o in workload.overrides if "batch_size" in o))
    result: dict[str, Any] = {"workload": workload.name, "notes": workload.notes,
                              "steps": steps, "batch": batch, "repeats": repeats,
                              "load": f"{min(loads):.2f}-{max(loads):.2f}", "against": {}}
    for kind in kinds:
        result[kind] = statistics.median(r[kind]["samples_per_s"] for r in rounds)
        result[f"rss_{kind}"] = statistics.median(r[kind]["peak_rss_mb"] for r in rounds)
    for ref in kinds[1:]:
        ratios = [r["dltrain"]["samples_per_s"] / r[ref]["samples_per_s"] for r in rounds]
        result["against"][ref] = {"ratio": spread(ratios), "median": statistics.median(ratios)}
    return result


def wall(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True, check=True, cwd=cwd)
    return time.perf_counter() - start


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


def startup(repeats: int) -> dict:
    """Whole processes from start to exit, in turns; `smoke - one step` per round, against
    the target of at most 1 s."""
    dltrain = [sys.executable, "-m", "dltrain"]
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        commands = {
            "dltrain --help": [*dltrain, "--help"],
            "dltrain list": [*dltrain, "list"],
            "python -c 'import torch'": [sys.executable, "-c", "import torch"],
            "hand-written process, one step (glyphs MLP)": [sys.executable, "-c", ONE_STEP],
            "dltrain trainer=smoke (20 steps, validation, test, all files)":
                [*dltrain, "trainer=smoke"],
        }

        def measure(what: str) -> float:
            # a new run directory each time: dltrain refuses a new run into one that holds a run
            cmd = [*commands[what], f"hydra.run.dir={tmp}/smoke-{time.time_ns()}"] \
                if "trainer=smoke" in commands[what] else commands[what]
            seconds = wall(cmd, Path(tmp))
            loads.append(os.getloadavg()[0])
            return seconds

        rounds = in_turns(list(commands), repeats, measure)
    rows = [{"what": what, "median_s": statistics.median(r[what] for r in rounds),
             "min_s": min(r[what] for r in rounds), "max_s": max(r[what] for r in rounds)}
            for what in commands]
    smoke, one = list(commands)[-1], list(commands)[-2]
    over = [r[smoke] - r[one] for r in rounds]
    print(f"  start-up: smoke - one step = {spread(over, 2)} s", flush=True)
    return {"rows": rows, "over": spread(over, 2), "over_median": statistics.median(over),
            "repeats": repeats, "load": f"{min(loads):.2f}-{max(loads):.2f}"}


# --------------------------------------------------------------------------------------------
# The user's own files: reading a table into training tensors

TABLE_ROWS = 1_000_000
TABLE_LOAD = """
import json, sys, time
import pandas as pd
import yaml
from dltrain.cli import conf_dir
from dltrain.data import build_data
csv, parquet, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(f"{conf_dir()}/data/table.yaml") as f:
    cfg = {**yaml.safe_load(f), "target": "y"}  # data=table as configured, target y
readers = {
    "pandas read_csv": lambda: pd.read_csv(csv),
    "pandas read_csv(engine=pyarrow)": lambda: pd.read_csv(csv, engine="pyarrow"),
    "dltrain data=table, CSV": lambda: build_data({**cfg, "path": csv}),
    "pandas read_parquet": lambda: pd.read_parquet(parquet),
    "dltrain data=table, Parquet": lambda: build_data({**cfg, "path": parquet}),
}
for read in readers.values():
    read()  # untimed: the file cache warm for every reader alike
names = list(readers)
times = {name: [] for name in names}
for i in range(repeats):
    for name in names[i % len(names):] + names[:i % len(names)]:
        start = time.perf_counter()
        readers[name]()
        times[name].append(time.perf_counter() - start)
print("RESULT " + json.dumps(times))
"""


def table_load(repeats: int, threads: int) -> dict:
    """dltrain's table reader against pandas' own readers of the same files, in turns."""
    csv, parquet = table_file(TABLE_ROWS, ".csv"), table_file(TABLE_ROWS, ".parquet")
    load = os.getloadavg()[0]
    proc = subprocess.run([sys.executable, "-c", TABLE_LOAD, str(csv), str(parquet),
                           str(repeats)], capture_output=True, text=True, check=False, cwd=ROOT,
                          env={**os.environ, "OMP_NUM_THREADS": str(threads)})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"table_load failed:\n{proc.stderr[-2000:]}")
    times = json.loads(lines[-1][len("RESULT "):])
    ratios = {
        "CSV, against pandas read_csv": [d / p for d, p in zip(
            times["dltrain data=table, CSV"], times["pandas read_csv"], strict=True)],
        "CSV, against read_csv(engine=pyarrow)": [d / p for d, p in zip(
            times["dltrain data=table, CSV"], times["pandas read_csv(engine=pyarrow)"],
            strict=True)],
        "Parquet, against pandas read_parquet": [d / p for d, p in zip(
            times["dltrain data=table, Parquet"], times["pandas read_parquet"], strict=True)],
    }
    for what, r in ratios.items():
        print(f"  table_load: dltrain / pandas, {what}: {spread(r, 2)}", flush=True)
    return {"times": times, "ratios": ratios, "repeats": repeats,
            "load": f"{min(load, os.getloadavg()[0]):.2f}-{max(load, os.getloadavg()[0]):.2f}"}


def table_load_markdown(result: dict) -> list[str]:
    lines = [f"Reading a {TABLE_ROWS:,} x 20 table into training tensors ({result['repeats']} "
             f"rounds in turns, load {result['load']}):", "",
             "| reader | median s | min-max s |", "|---|---:|---|"]
    for what, t in result["times"].items():
        lines.append(f"| {what} | {statistics.median(t):.2f} | {min(t):.2f}-{max(t):.2f} |")
    for what, r in result["ratios"].items():
        lines.append(f"| **dltrain / pandas, {what}** (target <= 1.3) | **{spread(r, 2)}** | |")
    return lines


# --------------------------------------------------------------------------------------------
# Predict: rows per second of `dltrain predict` against the model called directly

PREDICT_ROWS = 100_000
PREDICT_BATCH = 4096
PREDICT = """
import json, sys, time
from pathlib import Path
import pandas as pd
import torch
import dltrain
from dltrain.use.predict import Request, answer
run_dir, csv, out, repeats, batch = (Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]),
                                     int(sys.argv[4]), int(sys.argv[5]))
m = dltrain.load(run_dir)
payload = torch.load(m.run.checkpoint, weights_only=True)
mean = torch.tensor(payload["norm"]["mean"])
std = torch.tensor(payload["norm"]["std"])
y_mean = torch.tensor(payload["norm"]["target"]["mean"])
y_std = torch.tensor(payload["norm"]["target"]["std"])
model, features = m.model, payload["data"]["features"]

def hand():
    frame = pd.read_csv(csv)
    x = torch.from_numpy(frame[features].to_numpy(dtype="float32"))
    out_ = torch.empty(len(x), 1)
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            z = (x[start:start + batch] - mean) / std
            out_[start:start + batch] = model(z) * y_std + y_mean
    frame["pred_y"] = out_[:, 0].numpy()
    frame.to_csv(out.with_name("hand.csv"), index=False)

def model_only(x=torch.randn(len(pd.read_csv(csv, usecols=[0])), len(features))):
    with torch.inference_mode():
        for start in range(0, len(x), batch):
            model((x[start:start + batch] - mean) / std)

contenders = {"dltrain predict": lambda: answer(Request(run_dir, csv, out, batch)),
              "hand-written": hand, "the model alone (no file read or written)": model_only}
for run in contenders.values():
    run()  # untimed: a warm file cache and warm allocator for all
names = list(contenders)
times = {name: [] for name in names}
for i in range(repeats):
    for name in names[i % len(names):] + names[:i % len(names)]:
        start = time.perf_counter()
        contenders[name]()
        times[name].append(time.perf_counter() - start)
print("RESULT " + json.dumps(times))
"""


def predict_bench(repeats: int, threads: int) -> dict:
    """`dltrain predict` on a 100,000-row table against the hand-written equivalent, in turns
    in one process; the whole process apart, for its start-up."""
    csv = table_file(PREDICT_ROWS, ".csv")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        subprocess.run([sys.executable, "-m", "dltrain", "data=table", f"data.path={csv}",
                        "data.target=y", "data.n_train=5000", "trainer=smoke",
                        f"hydra.run.dir={run_dir}"], check=True, capture_output=True, cwd=tmp,
                       env=env)
        proc = subprocess.run([sys.executable, "-c", PREDICT, str(run_dir), str(csv),
                               f"{tmp}/pred.csv", str(repeats), str(PREDICT_BATCH)],
                              capture_output=True, text=True, check=False, cwd=ROOT, env=env)
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode != 0 or not lines:
            raise SystemExit(f"predict failed:\n{proc.stderr[-2000:]}")
        times = json.loads(lines[-1][len("RESULT "):])
        command = [sys.executable, "-m", "dltrain", "predict", str(run_dir), str(csv), "--out",
                   f"{tmp}/cli.csv", "--batch-size", str(PREDICT_BATCH)]
        whole = []
        for _ in range(repeats):
            whole.append(wall(command, Path(tmp)))
            load.append(os.getloadavg()[0])
    ours, hand = times["dltrain predict"], times["hand-written"]
    ratios = [h / d for d, h in zip(ours, hand, strict=True)]  # rows/s dltrain / rows/s hand
    startup_s = statistics.median(whole) - statistics.median(ours)
    print(f"  predict: rows/s dltrain / hand-written = {spread(ratios, 2)}; start-up "
          f"{startup_s:.2f} s", flush=True)
    return {"times": times, "ratio": spread(ratios, 2), "whole": whole, "startup_s": startup_s,
            "repeats": repeats, "load": f"{min(load):.2f}-{max(load):.2f}"}


def predict_markdown(result: dict) -> list[str]:
    lines = [f"`dltrain predict` on a {PREDICT_ROWS:,} x 20 CSV (MLP 19-256-256-1, batches of "
             f"{PREDICT_BATCH}; read, predict, write the CSV; {result['repeats']} rounds in "
             f"turns, load {result['load']}):", "",
             "| contender | median s | rows/s | min-max s |", "|---|---:|---:|---|"]
    for what, t in result["times"].items():
        median = statistics.median(t)
        lines.append(f"| {what} | {median:.2f} | {PREDICT_ROWS / median:,.0f} "
                     f"| {min(t):.2f}-{max(t):.2f} |")
    whole = result["whole"]
    lines.append(f"| `dltrain predict`, the whole process | {statistics.median(whole):.2f} | "
                 f"| {min(whole):.2f}-{max(whole):.2f} |")
    lines.append(f"| **rows/s, dltrain / hand-written** (target >= 0.9) | **{result['ratio']}** "
                 f"| | |")
    lines.append(f"| start-up (whole process less the in-process time) "
                 f"| {result['startup_s']:.2f} | | |")
    return lines


# --------------------------------------------------------------------------------------------
# Sweeps: the basic launcher against the vectorised one


def run_sweep(launcher: str, jobs: int, overrides: list[str], tmp: Path) -> float:
    """Seconds from the start of `dltrain -m ...` to its exit; every job must complete."""
    folder = tmp / f"{launcher}-{time.time_ns()}"
    cmd = [sys.executable, "-m", "dltrain", "-m", f"hydra/launcher={launcher}", *overrides,
           f"hydra.sweep.dir={folder}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=tmp)
    elapsed = time.perf_counter() - start
    summaries = [json.loads(p.read_text()) for p in folder.glob("*/summary.json")]
    done = sum(s["status"] == "completed" for s in summaries)
    if proc.returncode != 0 or done != jobs:
        raise SystemExit(f"the {launcher} sweep failed ({done} of {jobs} runs completed):\n"
                         f"{proc.stderr[-2000:]}")
    return elapsed


def compare_sweeps(sweep: Sweep, repeats: int, threads: int | None) -> dict:
    """The whole sweep with either launcher, and the same sweep with half the seeds: the
    difference is what the extra jobs cost, without what every process pays once (start-up,
    composing the first config, the report), so it gives the speed-up per job."""
    half = max(sweep.seeds // 2, 1)
    sizes = {"full": (sweep.seeds, sweep.jobs), "half": (half, sweep.jobs // sweep.seeds * half)}
    loads = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory() as tmp:
        def measure(what: str) -> float:
            launcher, size = what.split(":")
            seeds, jobs = sizes[size]
            seconds = run_sweep(launcher, jobs, sweep.overrides(seeds, threads), Path(tmp))
            loads.append(os.getloadavg()[0])
            return seconds

        rounds = in_turns(["basic:full", "vectorised:full", "basic:half", "vectorised:half"],
                          repeats, measure)
    extra_jobs = sizes["full"][1] - sizes["half"][1]
    per_job = {launcher: [(r[f"{launcher}:full"] - r[f"{launcher}:half"]) / extra_jobs
                          for r in rounds] for launcher in ("basic", "vectorised")}
    whole = [r["basic:full"] / r["vectorised:full"] for r in rounds]
    marginal = [b / v for b, v in zip(per_job["basic"], per_job["vectorised"], strict=True)]
    for i, r in enumerate(rounds):
        print(f"  {sweep.name} {i + 1}: basic {r['basic:full']:.1f} s  vectorised "
              f"{r['vectorised:full']:.1f} s  ({whole[i]:.2f}x); per extra job "
              f"{per_job['basic'][i]:.3f} s vs {per_job['vectorised'][i]:.3f} s "
              f"({marginal[i]:.2f}x)", flush=True)
    return {"sweep": sweep, "threads": threads, "half_jobs": sizes["half"][1],
            **{f"{launcher}_{size}": spread([r[f"{launcher}:{size}"] for r in rounds], 1)
               for launcher in ("basic", "vectorised") for size in sizes},
            "basic_per_job": spread(per_job["basic"], 3),
            "vectorised_per_job": spread(per_job["vectorised"], 3),
            "ratio": spread(whole, 2), "ratio_per_job": spread(marginal, 2),
            "load": f"{min(loads):.2f}-{max(loads):.2f}", "repeats": repeats}


# --------------------------------------------------------------------------------------------
# Markdown


def device_line(device: str, threads: int) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    return (f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"{threads} torch threads (torch {torch.__version__})")


def throughput_markdown(results: list[dict]) -> list[str]:
    lines = ["| workload | contender | samples/s | steps/s | dltrain / this, median (min-max) "
             "| peak RSS (MB) | load |", "|---|---|---:|---:|---|---:|---|"]
    for r in results:
        for kind, label in CONTENDERS.items():
            if kind not in r:
                continue
            ratio = "" if kind == "dltrain" else r["against"][kind]["ratio"]
            lines.append(f"| {r['workload']} — {r['notes']} | {label} | {r[kind]:.0f} "
                         f"| {r[kind] / r['batch']:.0f} | {ratio} | {r[f'rss_{kind}']:.0f} "
                         f"| {r['load']} |")
    return lines


def startup_markdown(start: dict) -> list[str]:
    lines = [f"| start-up, whole process ({start['repeats']} rounds, load {start['load']}) "
             "| median s | min-max s |", "|---|---:|---|"]
    for s in start["rows"]:
        lines.append(f"| {s['what']} | {s['median_s']:.2f} | {s['min_s']:.2f}-{s['max_s']:.2f} |")
    lines.append(f"| **trainer=smoke minus the one-step process** (target <= 1 s) "
                 f"| **{start['over']}** | |")
    return lines


def sweep_markdown(result: dict) -> list[str]:
    sweep: Sweep = result["sweep"]
    steps = sweep.epochs * sweep.steps_per_epoch
    threads = result["threads"] or "torch's default"
    half = result["half_jobs"]
    line = " ".join(f"trainer.seed=0,...,{sweep.seeds - 1}" if o.startswith("trainer.seed=")
                    else (f"optim.lr=<{len(sweep.rates)} rates>" if o.startswith("optim.lr=")
                          else o) for o in sweep.overrides(1, None))
    return [
        f"`dltrain -m {line}` ({sweep.jobs} "
        f"jobs of {steps} steps each, {sweep.what}; threads: {threads}), whole processes "
        f"from start to exit, the report included, and the same with half the seeds ({half} "
        f"jobs); {result['repeats']} rounds, load {result['load']}.", "",
        f"| launcher | {sweep.jobs} jobs, wall s | {half} jobs, wall s "
        f"| s per extra job ({sweep.jobs} - {half}) |", "|---|---|---|---|",
        f"| basic (one job after the other) | {result['basic_full']} | {result['basic_half']} "
        f"| {result['basic_per_job']} |",
        f"| vectorised | {result['vectorised_full']} | {result['vectorised_half']} "
        f"| {result['vectorised_per_job']} |",
        f"| **speed-up, basic / vectorised** | **{result['ratio']}** | "
        f"| **{result['ratio_per_job']}** |"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = [*WORKLOADS, "startup", "table_load", "predict", *SWEEPS]
    parser.add_argument("--workloads", default=",".join([*WORKLOADS, "startup"]),
                        help=f"comma-separated, of: {', '.join(names)}")
    parser.add_argument("--repeats", type=int, default=5, help="rounds of turns")
    parser.add_argument("--steps-scale", type=float, default=1.0,
                        help="multiply every workload's step count (e.g. 0.2 for a quick look)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--markdown", type=Path, help="append the tables to this file")
    parser.add_argument("--sweep-hidden", help="the sweeps' MLP layer widths, e.g. [32,32]")
    parser.add_argument("--sweep-epochs", type=int, help="the sweeps' epochs per job")
    parser.add_argument("--sweep-threads", type=int, default=None,
                        help="trainer.threads of every job (default: torch's own choice)")
    parser.add_argument("--child", choices=list(CONTENDERS), help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    parser.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    chosen = args.workloads.split(",")
    unknown = [n for n in chosen if n not in names]
    if unknown:
        parser.error(f"unknown workload {unknown[0]}; choose from {', '.join(names)}")

    sections = [f"### {time.strftime('%Y-%m-%d')} · {device_line(args.device, args.threads)}"]
    results = []
    for name in (n for n in chosen if n in WORKLOADS):
        workload = WORKLOADS[name]
        steps = max(10, int(workload.steps * args.steps_scale))
        results.append(compare(workload, args.repeats, args.device, args.threads, steps))
    if results:
        sections.append("\n".join(throughput_markdown(results)))
    if "startup" in chosen:
        sections.append("\n".join(startup_markdown(startup(args.repeats))))
    if "table_load" in chosen:
        sections.append("\n".join(table_load_markdown(table_load(args.repeats, args.threads))))
    if "predict" in chosen:
        sections.append("\n".join(predict_markdown(predict_bench(args.repeats, args.threads))))
    for name in (n for n in chosen if n in SWEEPS):
        sweep = SWEEPS[name]
        sweep = replace(sweep, hidden=args.sweep_hidden or sweep.hidden,
                        epochs=args.sweep_epochs or sweep.epochs)
        sections.append("\n".join(sweep_markdown(compare_sweeps(sweep, args.repeats,
                                                                 args.sweep_threads))))
    text = "\n\n".join(sections) + "\n"
    print()
    print(text)
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write("\n" + text)


if __name__ == "__main__":
    main()
