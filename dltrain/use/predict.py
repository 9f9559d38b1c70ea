"""Predictions of a finished run, in the data's own units: computed (`values`), laid out for a
person (`Predictions`: a table and arrays), written (`write`: CSV, TSV, Parquet or .npz,
atomically) or shown (`show`); and text a language model writes (`generate`).

The layout, for N samples:
- classification: `pred_<target>` (the class name; `pred_class` where the target has no name)
  and one probability column `p_<class>` per class; the .npz holds `probabilities` (N, K),
  `label` (N,) ids, `class` (N,) names and `classes` (K,);
- regression: `pred_<target>` per target column (`pred`, or `pred_0`... without names); the
  .npz holds `prediction` (N, outputs) or (N, *target_shape) for fields;
- a series: the forecast of every channel after the last window, one row a step ahead
  (`step`, `pred_<channel>`), or with every_window one row per input row, `pred_<channel>+h`
  for h steps after that row (empty for the first window - 1 rows); `.npz`: `forecast`
  (windows, channels, horizon) and `end`, the row each window ends at;
- reconstruction: `reconstruction` (N, *input_shape) in the inputs' units.
A table's own columns come first, as they were; image files are named in a `file` column.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dltrain.errors import ConfigError
from dltrain.io import atomic_write
from dltrain.use.inputs import Inputs, series_facts
from dltrain.use.loaded import LoadedRun

if TYPE_CHECKING:
    import pandas as pd

BATCH_SIZE = 4096  # samples a forward pass: large enough that Python's share is small
TABLES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
FORMATS = (*TABLES, ".parquet", ".npz")


def values(run: LoadedRun, x: np.ndarray | torch.Tensor, batch_size: int = BATCH_SIZE
           ) -> np.ndarray:
    """`run.in_units` over `x` (N, *input_shape) in batches: float32 (N, ...) on the host."""
    inputs = torch.from_numpy(x) if isinstance(x, np.ndarray) else x
    out: np.ndarray | None = None
    with torch.inference_mode():
        for start in range(0, len(inputs), batch_size):
            batch = inputs[start:start + batch_size].to(run.device, non_blocking=True)
            answer = run.in_units(batch).float().cpu().numpy()
            if out is None:  # its shape is known after the first batch
                out = np.empty((len(inputs), *answer.shape[1:]), dtype=np.float32)
            out[start:start + len(answer)] = answer
    if out is None:
        raise ConfigError("The input holds no samples.")
    return out


@dataclass
class Predictions:
    """The predictions of N samples as a table (one row a sample; None where they have more
    axes than a table holds) and as named arrays (what an .npz holds)."""

    table: pd.DataFrame | None
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


def _unique(name: str, taken: Sequence[str]) -> str:
    """`name`, with `_` added until no column of the input's own table has it."""
    while name in taken:
        name += "_"
    return name


def _target_names(run: LoadedRun, outputs: int) -> list[str]:
    targets = [str(t) for t in run.facts.get("target") or ()]
    if len(targets) == outputs:
        return [f"pred_{t}" for t in targets]
    return ["pred"] if outputs == 1 else [f"pred_{i}" for i in range(outputs)]


def lay_out(run: LoadedRun, inputs: Inputs, out: np.ndarray) -> Predictions:
    """`out` (values of `inputs.x`) laid out as the module's docstring says."""
    import pandas as pd

    if series_facts(run) is not None:
        return _series(run, inputs, out)
    spec = run.spec
    own = inputs.table
    taken = [str(c) for c in own.columns] if own is not None else []
    columns: dict[str, np.ndarray] = dict(inputs.labels)
    arrays: dict[str, np.ndarray] = dict(inputs.labels)
    if spec.task == "classification":
        classes = np.array(spec.class_names, dtype=str)
        label = out.argmax(axis=1)
        targets = run.facts.get("target") or ["class"]
        columns[_unique(f"pred_{targets[0]}", taken)] = classes[label]
        for k, name in enumerate(classes):
            columns[_unique(f"p_{name}", taken)] = out[:, k]
        arrays.update(probabilities=out, label=label, **{"class": classes[label]},
                      classes=classes)
    elif spec.task == "reconstruction":
        arrays["reconstruction"] = out
        columns = {}
    elif out.ndim > 2:  # a field: more axes than a table's row holds
        arrays["prediction"] = out
        columns = {}
    else:
        for name, column in zip(_target_names(run, out.shape[1]), out.T, strict=True):
            columns[_unique(name, taken)] = column
        arrays["prediction"] = out
    table = None
    if columns:
        table = pd.DataFrame(columns)
        if own is not None:
            table = beside(own, table)
    return Predictions(table, arrays)


def beside(own: pd.DataFrame, predictions: pd.DataFrame) -> pd.DataFrame:
    """The input's own columns, then the predictions' (the input's row labels dropped)."""
    import pandas as pd

    return pd.concat([own.reset_index(drop=True), predictions], axis=1)


def _series(run: LoadedRun, inputs: Inputs, out: np.ndarray) -> Predictions:
    import pandas as pd

    series = series_facts(run)
    names = [str(c) for c in series["channels"]]
    horizon = int(series["horizon"])
    forecast = out.reshape(len(out), len(names), horizon)  # y[n, c * horizon + h]
    ends = inputs.window_end
    arrays = {"forecast": forecast, "end": ends, "channels": np.array(names, dtype=str)}
    own = inputs.table
    taken = [str(c) for c in own.columns] if own is not None else []
    if not inputs.every_window:  # the forecast after the series: one row a step ahead
        table = pd.DataFrame({"step": np.arange(1, horizon + 1),
                              **{_unique(f"pred_{c}", taken): forecast[0, i]
                                 for i, c in enumerate(names)}})
        return Predictions(table, arrays)
    rows = inputs.steps
    columns = {}
    for i, c in enumerate(names):
        for h in range(horizon):
            column = np.full(rows, np.nan, dtype=np.float32)
            column[ends] = forecast[:, i, h]
            columns[_unique(f"pred_{c}+{h + 1}", taken)] = column
    table = pd.DataFrame(columns)
    return Predictions(beside(own, table) if own is not None else table, arrays)


# ---------------------------------------------------------------------------------------------
# Out: a file, or the terminal


def write(predictions: Predictions, path: Path) -> None:
    """CSV / TSV / Parquet (the table) or .npz (the arrays), by `path`'s extension,
    atomically: a reader never sees half a file."""
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise ConfigError(f"--out {path}: predictions are written as {', '.join(FORMATS)}, "
                          "chosen by the extension.")
    if suffix == ".npz":
        def npz(f: Any) -> None:
            np.savez(f, **predictions.arrays)

        atomic_write(path, npz)
        return
    table = predictions.table
    if table is None:
        shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in predictions.arrays.items())
        raise ConfigError(f"--out {path}: these predictions ({shapes}) have more axes than a "
                          "table's rows hold; write them as .npz.")
    if suffix == ".parquet":
        atomic_write(path, lambda f: table.to_parquet(f, index=False))
        return

    # pandas writes UTF-8 into the binary file itself, a chunk of rows at a time
    atomic_write(path, lambda f: table.to_csv(f, sep=TABLES[suffix], index=False))


def show(predictions: Predictions, rows: int = 10) -> str:
    """A short view for the terminal: the table's first and last rows, or each array's shape
    and first values."""
    table = predictions.table
    if table is not None:
        import pandas as pd

        with pd.option_context("display.width", 120, "display.float_format", "{:.6g}".format):
            body = table.to_string(max_rows=2 * rows, min_rows=2 * rows, max_cols=12,
                                   index=False)
        return f"{body}\n({len(table):,} rows; --out FILE writes them all)"
    lines = []
    for name, array in predictions.arrays.items():
        first = np.array2string(array.reshape(len(array), -1)[0][:8], precision=4)
        lines.append(f"{name}: {array.dtype} {tuple(array.shape)}, the first begins {first}")
    return "\n".join(lines) + "\n(--out FILE.npz writes them all)"


# ---------------------------------------------------------------------------------------------
# A language model: text


def generate(run: LoadedRun, prompt: str, length: int, temperature: float, seed: int = 0
             ) -> str:
    """`prompt` and `length` characters after it, each drawn from the model's next-character
    distribution at `temperature` (0: always the most likely one), seeded by `seed`. The
    model sees at most its context (data.block_size) of the latest characters, as in
    training; a character the training text lacked is the unknown id, as in validation."""
    from dltrain.data.text import decode, encode

    spec = run.spec
    if not prompt:
        raise ConfigError("The prompt is empty; a language model continues a text of at least "
                          "one character.")
    if temperature < 0 or length < 0:
        raise ConfigError(f"--temperature {temperature} and --length {length} must not be "
                          "negative.")
    context = int(spec.input_shape[0])
    ids = torch.from_numpy(encode(prompt, spec.vocab)).to(run.device).view(1, -1)
    gen = torch.Generator(device=run.device).manual_seed(seed)
    with torch.inference_mode():
        for _ in range(length):
            logits = run.in_units(ids[:, -context:])[:, -1, :].float()
            if temperature == 0:
                nxt = logits.argmax(dim=-1, keepdim=True)
            else:
                probs = torch.softmax(logits / temperature, dim=-1)
                nxt = torch.multinomial(probs, 1, generator=gen)
            ids = torch.cat([ids, nxt], dim=1)
    return prompt + decode(ids[0, -length:] if length else [], spec.vocab)


# ---------------------------------------------------------------------------------------------
# The verb


@dataclass(frozen=True)
class Request:
    """What `dltrain predict` was asked (see dltrain.cli.predict)."""

    run_dir: Path
    source: str
    out: Path | None = None
    batch_size: int = BATCH_SIZE
    device: str = "cpu"
    every_window: bool = False
    length: int = 200
    temperature: float = 1.0
    seed: int = 0


def answer(request: Request) -> str:
    """Predict for `request`, write the file it names, and say what was done (or show the
    predictions) in the text to print."""
    from dltrain.use.inputs import read_input
    from dltrain.use.loaded import load_run

    if request.out is not None and request.out.is_dir():
        raise ConfigError(f"--out {request.out} is a folder; name the file to write.")
    run = load_run(request.run_dir, request.device)
    if run.spec.task == "language_model":
        text = generate(run, request.source, request.length, request.temperature, request.seed)
        if request.out is None:
            return text
        atomic_write(request.out, lambda f: f.write(text.encode("utf-8")))
        return f"wrote {len(text):,} characters to {request.out}"
    if request.out is not None and request.out.suffix.lower() not in FORMATS:
        raise ConfigError(f"--out {request.out}: predictions are written as "
                          f"{', '.join(FORMATS)}, chosen by the extension.")
    if request.every_window and series_facts(run) is None:
        raise ConfigError("--every-window is for a run of data=series; this run's data is "
                          f"{run.spec.name}.")
    inputs = read_input(run, request.source, request.every_window)
    predictions = lay_out(run, inputs, values(run, inputs.x, request.batch_size))
    if request.out is None:
        return show(predictions)
    write(predictions, request.out)
    count = len(predictions.table) if predictions.table is not None else len(inputs.x)
    return f"wrote {count:,} rows of predictions to {request.out} ({run.checkpoint.name})"
