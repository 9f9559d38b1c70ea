"""`dltrain predict RUN_DIR INPUT [--out FILE] ...`: its arguments. The work is
dltrain.use.predict's, imported once the arguments are read (so `--help` stays light)."""

from __future__ import annotations

import argparse
from pathlib import Path

DESCRIPTION = """\
Predict with a finished run's best weights (else its last), in the data's own units:
regression values un-standardised, classes by name with one probability column per class.
INPUT is read as the run's data option reads its files: a CSV/TSV/Parquet table with the
feature columns (its other columns are kept in the output), an .npz/.npy/HDF5 array file
(x under the run's data.x key), an image file or a folder of images, a series file (the
forecast after its last window, or after every window with --every-window), or, for a
language model, the prompt to continue. Without --out a short view is printed."""

EXAMPLES = """\
examples:
  dltrain predict outputs/runs/RUN new_rows.csv --out predictions.csv
  dltrain predict outputs/runs/RUN photos/ --out classes.csv
  dltrain predict outputs/runs/RUN fields.npz --out fields_pred.npz
  dltrain predict outputs/runs/RUN "ROMEO:" --length 300 --temperature 0.8
  dltrain predict outputs/runs/GAN_RUN --samples 64 --out samples.png"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dltrain predict", description=DESCRIPTION,
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the run's directory")
    p.add_argument("input", metavar="INPUT", nargs="?", default=None,
                   help="a file or folder of inputs; a language model's prompt (none with "
                        "--samples)")
    p.add_argument("--out", type=Path, default=None,
                   help="write the predictions here: .csv, .tsv, .parquet (a table) or .npz "
                        "(arrays); a language model's text to any file")
    p.add_argument("--batch-size", type=int, default=4096, metavar="N",
                   help="samples a forward pass (default 4096)")
    p.add_argument("--device", default="cpu", metavar="D",
                   help="cpu (default), cuda, cuda:N, mps or auto")
    p.add_argument("--every-window", action="store_true",
                   help="a series: a forecast after every window, not after the last alone")
    p.add_argument("--length", type=int, default=200,
                   help="a language model: characters to write after the prompt (default 200)")
    p.add_argument("--temperature", type=float, default=1.0,
                   help="a language model: sampling temperature, 0 for the most likely "
                        "character (default 1.0)")
    p.add_argument("--seed", type=int, default=0,
                   help="a language model, or --samples: the seed of the sampling (default 0)")
    p.add_argument("--samples", type=int, default=None, metavar="N",
                   help="a generative run (task=generation, or a VAE): write N samples, to "
                        "--out FILE.npz or .png (default RUN_DIR/generated.npz)")
    return p


def predict(args: list[str]) -> int:
    """`dltrain predict RUN_DIR INPUT [...]`: see DESCRIPTION."""
    p = parser()
    ns = p.parse_args(args)
    if ns.input is None and ns.samples is None:  # argparse's own words, and its exit 2
        p.error("the following arguments are required: INPUT (or --samples N for a "
                "generative run)")
    if ns.batch_size < 1:
        from dltrain.errors import ConfigError

        raise ConfigError(f"--batch-size {ns.batch_size} must be at least 1.")
    if ns.samples is not None:
        from dltrain.generation.draw import write_samples
        from dltrain.use.loaded import load_run

        print(write_samples(load_run(ns.run_dir, ns.device), ns.samples, ns.seed, ns.out))
        return 0
    from dltrain.use.predict import Request, answer

    print(answer(Request(ns.run_dir, ns.input, ns.out, ns.batch_size, ns.device,
                         ns.every_window, ns.length, ns.temperature, ns.seed)))
    return 0
