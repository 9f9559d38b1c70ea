"""New inputs for a finished run, read as its data option read its training files: raw values
(N, *spec.input_shape) in the units the data held them, for `LoadedRun.in_units`.

INPUT is told apart by what it is: a folder or an image file (image runs), a table (the
feature columns of a data=table run; a data=series run reads a table or an .npy as a series),
an array file (.npz / .npy / HDF5, x under the run's data.x key). The readers of dltrain.data
do the reading, so a file is read for prediction exactly as it was for training: the same
one-hot categories (an unseen one refused), the same image conversion and size, the same
series columns. Everything that does not fit the run is one sentence saying what the run
reads (`expects`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dltrain.data.images import DEEP_MODES, SUFFIXES, Pixels, decode_all, read_header
from dltrain.data.owned import ColumnInputs
from dltrain.data.table import READERS, Columns, inputs_of, read_frame
from dltrain.errors import ConfigError
from dltrain.rules import suggest
from dltrain.use.loaded import LoadedRun, pixel_scale

if TYPE_CHECKING:
    import pandas as pd

ARRAYS = (".npz", ".npy", ".h5", ".hdf5")


@dataclass
class Inputs:
    """Samples for the model, and what the output keeps beside its predictions."""

    x: np.ndarray  # (N, *spec.input_shape), raw values as the run's data held them
    where: str  # the input, for messages
    table: pd.DataFrame | None = None  # a table's own rows, every column, passed through
    labels: dict[str, np.ndarray] = field(default_factory=dict)  # per sample: file, end
    window_end: np.ndarray | None = None  # series: the row each window ends at
    steps: int = 0  # series: its time steps
    every_window: bool = False  # series: a window ending at every row, not the last alone


# ---------------------------------------------------------------------------------------------
# What the run reads


def series_facts(run: LoadedRun) -> dict[str, Any] | None:
    """A data=series run's channels, window and horizon; None for every other run."""
    series = run.facts.get("series")
    return series if isinstance(series, dict) else None


def run_columns(facts: dict[str, Any]) -> Columns | None:
    """The table columns a data=table run reads, with their one-hot categories; None for a run
    whose data was not a table. (Older checkpoints name only the encoded features: their raw
    columns are read back from `column=category`.)"""
    if "features" not in facts:
        return None
    categories = {str(k): [str(c) for c in v] for k, v in (facts.get("categories") or {}).items()}
    columns = facts.get("columns")
    if columns is None:
        encoded = {f"{col}={cat}": col for col, cats in categories.items() for cat in cats}
        columns = list(dict.fromkeys(encoded.get(name, name) for name in facts["features"]))
    return Columns(tuple(facts.get("target") or ()), tuple(str(c) for c in columns), categories)


def _shape(shape: Sequence[int]) -> str:
    return "(N, " + ", ".join(str(s) for s in shape) + ")"


def expects(run: LoadedRun) -> str:
    """What the run reads, as the end of a sentence: 'a table with the columns a, b, colour'."""
    spec = run.spec
    if spec.task == "language_model":
        return "a prompt: the text to continue"
    series = series_facts(run)
    if series is not None:
        return (f"a series of {', '.join(map(str, series['channels']))} (a table or .npy, one "
                f"row a time step, at least {series['window']} steps)")
    columns = run_columns(run.facts)
    if columns is not None:
        text = [f"'{c}' ({', '.join(columns.categories[c][:6])}"
                f"{', ...' if len(columns.categories[c]) > 6 else ''})"
                for c in columns.features if c in columns.categories]
        return (f"a table with the columns {', '.join(columns.features)}"
                + (f", text column{'s' if len(text) > 1 else ''} {'; '.join(text)}"
                   if text else ""))
    if spec.kind == "image":
        channels, height, width = spec.input_shape
        tone = {1: "grey", 3: "colour (RGB)"}.get(channels, f"{channels}-channel")
        return (f"{tone} images of {height}x{width} (image files, a folder of them, or arrays "
                f"{_shape(spec.input_shape)})")
    return f"arrays of shape {_shape(spec.input_shape)}" + (
        f" (or a table of {spec.input_shape[0]} numeric columns)" if spec.kind == "vector"
        else "")


def refuse(run: LoadedRun, what: str) -> ConfigError:
    """`what` does not fit: one sentence ending with what the run reads."""
    return ConfigError(f"{what}; the run reads {expects(run)}.")


# ---------------------------------------------------------------------------------------------
# INPUT: a path


def read_input(run: LoadedRun, source: str, every_window: bool = False) -> Inputs:
    """The samples of the file or folder `source`, read as the run's data option reads."""
    path = Path(source).expanduser()
    spec = run.spec
    if not path.exists():
        raise refuse(run, f"{source}: there is no such file or folder")
    suffix = path.suffix.lower()
    if path.is_dir():
        if spec.kind != "image":
            raise refuse(run, f"{source} is a folder, read as a folder of images")
        from dltrain.data.images import _images  # the training reader's own walk

        files = _images(path)
        if not files:
            raise refuse(run, f"{source} holds no image files ({', '.join(SUFFIXES)})")
        return image_inputs(run, files, [str(f.relative_to(path)) for f in files], source)
    if suffix in SUFFIXES:
        if spec.kind != "image":
            raise refuse(run, f"{source} is an image")
        return image_inputs(run, [path], [path.name], source)
    if series_facts(run) is not None and (suffix in READERS or suffix == ".npy"):
        frame = read_npy(path) if suffix == ".npy" else read_frame(path, "INPUT")
        return series_inputs(run, frame, source, every_window)
    if suffix in READERS:
        frame = read_frame(path, "INPUT")
        return Inputs(table_x(run, frame, source), source, table=frame)
    if suffix in ARRAYS:
        x = array_x(run, read_x(run, path), source)
        if series_facts(run) is not None:  # windows (N, C, window) as they are: one row each
            return Inputs(x, source, window_end=np.arange(len(x)), steps=len(x),
                          every_window=True)
        return Inputs(x, source)
    raise refuse(run, f"{source} is neither a table (.csv, .tsv, .parquet), an array file "
                      f"({', '.join(ARRAYS)}) nor an image ({', '.join(SUFFIXES)})")


# ---------------------------------------------------------------------------------------------
# Tables


def _numeric(column: Any) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def table_x(run: LoadedRun, frame: pd.DataFrame, where: str) -> np.ndarray:
    """(rows, features) float32 of a table: a data=table run's columns encoded as in training
    (one-hot with the training table's categories); for another vector run, its numeric
    columns when there are exactly as many as the model reads."""
    spec = run.spec
    if spec.kind != "vector":
        raise refuse(run, f"{where} is a table")
    columns = run_columns(run.facts)
    if columns is None:
        numeric = [c for c in frame.columns if _numeric(frame[c])]
        width = spec.input_shape[0]
        if len(numeric) != width:
            raise refuse(run, f"{where} has {len(numeric)} numeric columns and the model "
                              f"reads {width} values a row (its data was not a table, so "
                              "columns are taken in order)")
        columns = Columns((), tuple(numeric), {})
    for name in columns.features:
        if name not in frame.columns:
            near = suggest(name, [str(c) for c in frame.columns])
            hint = f" (did you mean '{near}'?)" if near else ""
            raise refuse(run, f"{where} has no column '{name}'{hint}")
    blank = {c: int(frame[c].isna().sum()) for c in columns.features}
    for c in columns.categories:
        if c in frame.columns and not _numeric(frame[c]):
            blank[c] += int(frame[c].astype(str).str.strip().eq("").sum())
    missing = {c: n for c, n in blank.items() if n}
    if missing:
        named = ", ".join(f"'{c}' in {n:,} row{'s' if n > 1 else ''}"
                          for c, n in missing.items())
        raise ConfigError(f"{where} has missing values (NaN or empty cells) in column {named}; "
                          "the model needs a value in every input column.")
    x = inputs_of(frame, columns, where)  # refuses an unseen category, names what it knows
    # row-major: a batch is then a contiguous slice of rows
    return x.rows() if isinstance(x, ColumnInputs) else np.ascontiguousarray(x)


# ---------------------------------------------------------------------------------------------
# Arrays


def read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ConfigError(f"{path} is not a readable .npy file ({err}).") from None


def x_key(run: LoadedRun) -> str:
    """Where x is in an .npz or HDF5 file: the run's data.x (data=arrays), else 'x'."""
    data = run.config.get("data") or {}
    return str(data.get("x") or "x")


def read_x(run: LoadedRun, path: Path) -> np.ndarray:
    """The inputs of an array file: the run's data.x key (an .npz or HDF5 file holding a
    single array is read whatever its key), an .npy whole."""
    from dltrain.data.arrays import Ref, _hdf5_datasets, read_array

    key: str | None = None
    suffix = path.suffix.lower()
    if suffix != ".npy":
        key = x_key(run)
        try:
            if suffix == ".npz":
                with np.load(path, allow_pickle=False) as archive:
                    held = list(archive.files)
            else:
                import h5py

                with h5py.File(path, "r") as handle:
                    held = _hdf5_datasets(handle)
        except Exception as err:  # not an archive or HDF5 file at all
            raise ConfigError(f"{path} is not a readable {suffix} file ({err}).") from None
        if key not in held and len(held) == 1:
            key = held[0]
    return np.asarray(read_array(Ref(path, key, "the run's data.x")))


def array_x(run: LoadedRun, x: Any, where: str) -> np.ndarray:
    """`x` shaped (N, *input_shape): as given, with the channel axis added to one-channel
    signals or images (as data=arrays adds it), or one sample alone; else refused."""
    spec = run.spec
    want = tuple(spec.input_shape)
    x = np.asarray(x)
    if x.dtype.kind not in "biuf":
        raise refuse(run, f"{where} holds {x.dtype} values, not numbers")
    channel = spec.kind in ("image", "signal") and want[0] == 1
    if tuple(x.shape[1:]) == want:
        pass
    elif channel and tuple(x.shape[1:]) == want[1:]:
        x = x[:, None]
    elif tuple(x.shape) == want or (channel and tuple(x.shape) == want[1:]):
        x = x.reshape(1, *want)  # one sample
    elif want == (1,) and x.ndim == 1:
        x = x[:, None]  # one feature a row
    else:
        raise refuse(run, f"{where}: inputs of shape {tuple(x.shape)} do not fit the model, "
                          f"which reads {_shape(want)}")
    if x.dtype.kind == "f" and len(x) and not np.isfinite(x).all():
        bad = int((~np.isfinite(x.reshape(len(x), -1))).any(axis=1).sum())
        raise ConfigError(f"{where}: {bad:,} of {len(x):,} samples hold NaN or infinite "
                          "values; the model needs finite inputs.")
    return x


# ---------------------------------------------------------------------------------------------
# Images


def image_inputs(run: LoadedRun, files: Sequence[Path], names: Sequence[str], where: str
                 ) -> Inputs:
    """Image files decoded as the training reader decoded them (Pillow, resized to the run's
    size; grey replicated into RGB for a colour run) into the units the run's raw inputs had:
    stored pixels for a run trained on image files, [0, 1] for one whose images were floats
    (data=glyphs). A colour picture for a grey run is refused unless the run converted its
    own pictures to grey (data.channels=1); 8-bit and 16-bit/float files do not mix."""
    channels, height, width = run.spec.input_shape
    scale = pixel_scale(run.facts)
    deep = "image_size" in run.facts and scale == 1.0  # data=images of 16-bit or float files
    to_grey = (run.config.get("data") or {}).get("channels") == 1
    for path in files:
        header = read_header(path)
        if (header.mode in DEEP_MODES) != deep:
            held = "16-bit or floating-point" if header.mode in DEEP_MODES else "8-bit"
            trained = "16-bit or floating-point" if deep else "8-bit"
            raise refuse(run, f"{path} is a {held} image (mode {header.mode}) and the run "
                              f"trained on {trained} ones")
        if channels == 1 and header.colour and not to_grey and _in_colour(path):
            raise refuse(run, f"{path} is a colour image and the model reads one channel")
    pixels = Pixels(int(channels), (int(height), int(width)), deep)
    x = decode_all(list(files), pixels)
    if not deep and scale != 255.0:  # the run's images were values in [0, 1], not bytes
        x = x.astype(np.float32) * np.float32(scale / 255.0)
    return Inputs(x, where, labels={"file": np.array(names, dtype=str)})


def _in_colour(path: Path) -> bool:
    """Whether an RGB file holds any pixel that is not a shade of grey."""
    from PIL import Image

    with Image.open(path) as img:
        rgb = np.asarray(img.convert("RGB"))
    return bool((rgb[..., 0] != rgb[..., 1]).any() or (rgb[..., 1] != rgb[..., 2]).any())


# ---------------------------------------------------------------------------------------------
# Series


def series_values(run: LoadedRun, series: Any, where: str) -> np.ndarray:
    """(T, C) float64 of a series: the run's channel columns of a table (by name), or an
    array (T,) / (T, C) with as many channels."""
    import pandas as pd

    names = [str(c) for c in series_facts(run)["channels"]]
    if isinstance(series, pd.DataFrame):
        for name in names:
            if name not in series.columns:
                near = suggest(name, [str(c) for c in series.columns])
                hint = f" (did you mean '{near}'?)" if near else ""
                raise refuse(run, f"{where} has no column '{name}'{hint}")
            if not _numeric(series[name]):
                raise refuse(run, f"{where}: column '{name}' holds {series[name].dtype} values, "
                                  "not numbers")
        values = series[names].to_numpy(dtype=np.float64)
    else:
        values = np.asarray(series)
        if values.ndim not in (1, 2) or values.dtype.kind not in "biuf":
            raise refuse(run, f"{where} holds a {values.ndim}-D array of {values.dtype}")
        values = values.astype(np.float64).reshape(len(values), -1)
        if values.shape[1] != len(names):
            raise refuse(run, f"{where} holds {values.shape[1]} channels and the model reads "
                              f"{len(names)}")
    bad = ~np.isfinite(values).all(axis=1)
    if bad.any():
        raise ConfigError(f"{where}: {int(bad.sum()):,} time steps hold NaN or empty values "
                          f"(the first is row {int(np.flatnonzero(bad)[0])}); the model needs "
                          "complete windows.")
    return values


def series_inputs(run: LoadedRun, series: Any, where: str, every_window: bool) -> Inputs:
    """Windows of a series: the last `window` steps (what comes after the series), or with
    `every_window` each window of the series, one step apart (a forecast after every row
    from the window-th on). The windows are (N, C, window), as data=series cut them."""
    import pandas as pd

    window = int(series_facts(run)["window"])
    values = series_values(run, series, where)
    if len(values) < window:
        raise refuse(run, f"{where} holds {len(values):,} time steps, fewer than the model's "
                          f"window of {window}")
    table = series if isinstance(series, pd.DataFrame) else None
    if every_window:
        x = np.lib.stride_tricks.sliding_window_view(values, window, axis=0)  # (N, C, window)
        ends = np.arange(window - 1, len(values))
    else:
        x = values[-window:].T[None]
        ends = np.array([len(values) - 1])
    return Inputs(np.ascontiguousarray(x, dtype=np.float32), where, table=table,
                  window_end=ends, steps=len(values), every_window=every_window)
