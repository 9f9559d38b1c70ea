"""data=table: the user's own table (CSV, TSV, Parquet), or what their own function returns.

`data.path` is read by its extension with pandas (Parquet through pyarrow); `data.target` names the
column (or columns) to predict, `data.features` the inputs (null: every other column). Numeric
feature columns are used as they are; text, boolean and category columns are one-hot encoded
with the categories of the training file, which are kept in `Data.facts["categories"]` and
applied unchanged to `data.val_path` and `data.test_path`. Missing cells are refused, naming
the column and how many rows, unless `data.missing=drop`. The rest (splits, n_train, class
names, standardisation, DataSpec) is owned.assemble's, the same for every file source.

`data._target_=mymodule.load` calls the user's function instead of reading `data.path`: a
DataFrame it returns is handled as a table read from a file, a tuple (x, y) of arrays goes to
assemble as it is. Nothing here writes a file.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dltrain.data.checks import input_file
from dltrain.data.owned import (
    ColumnInputs,
    Samples,
    assemble,
    decide_kind,
    decide_task,
    infer_task,
)
from dltrain.data.spec import Data
from dltrain.errors import ConfigError
from dltrain.rules import suggest

if TYPE_CHECKING:  # pandas (with pyarrow) is imported when a table is read: half a second
    import pandas as pd

log = logging.getLogger(__name__)

# The readers by extension: how a file is read is decided by its name alone.
READERS = {".csv": ",", ".tsv": "\t", ".tab": "\t", ".parquet": None, ".pq": None}


def read_frame(path: str | Path, key: str = "data.path") -> pd.DataFrame:
    """The table at `path` (CSV, TSV or Parquet by extension); a missing, unknown or unreadable
    file is one sentence naming `key` and the file."""
    import pandas as pd

    path = Path(str(path)).expanduser()
    suffix = path.suffix.lower()
    if suffix not in READERS:
        raise ConfigError(f"{key}={path}: a table must be .csv, .tsv or .parquet "
                          f"(not '{suffix or 'no extension'}').")
    input_file(path, key, path)  # a folder, a device, a file that may not be read
    if not path.is_file():
        raise ConfigError(f"{key}={path}: there is no such file.")
    try:
        if READERS[suffix] is None:
            import pyarrow.parquet as pq

            # What pd.read_parquet does (pyarrow's to_pandas, as pandas calls it with
            # pyarrow >= 19), minus two copies of the table: ParquetFile.read keeps a column
            # of a row group as one piece (read_table's dataset reader cuts it into batches of
            # 131,072 rows that to_pandas then concatenates), and split_blocks leaves each
            # column its own block, a numeric one a view of arrow's buffer (not one 2-D
            # block that every column is copied into). Measured in scripts/bench.py table_load.
            with pq.ParquetFile(path) as file:
                frame = file.read(use_pandas_metadata=True).to_pandas(split_blocks=True)
        else:
            # pandas' own C parser: measured faster than engine="pyarrow" on a busy or small
            # machine (scripts/bench.py table_load), and it reads every dialect pandas reads
            frame = pd.read_csv(path, sep=READERS[suffix])
    except Exception as err:  # pyarrow's and pandas' many parse errors: the file is bad
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"{key}={path} cannot be read as a table: {first}") from None
    frame.columns = [str(c) for c in frame.columns]
    if frame.empty:
        raise ConfigError(f"{key}={path} holds no rows.")
    return frame


def _categorical(column: pd.Series) -> bool:
    """Text, booleans and categories are one-hot encoded; numbers are used as they are."""
    import pandas as pd

    return pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column)


@dataclass(frozen=True)
class Columns:
    """Which columns are read, decided once from the training table and the config."""

    target: tuple[str, ...]
    features: tuple[str, ...]
    categories: dict[str, list[str]]  # a one-hot column -> its categories, in encoding order

    @property
    def names(self) -> list[str]:
        """The model's input features in order, a one-hot column as `column=category`."""
        return [name for col in self.features for name in
                ([f"{col}={c}" for c in self.categories[col]] if col in self.categories
                 else [col])]


def _known(names: Sequence[str], frame: pd.DataFrame, key: str, where: str) -> None:
    for name in names:
        if name not in frame.columns:
            # a column spelt in another case first ('Y' for 'y'), then the nearest spelling
            near = next((c for c in frame.columns if c.lower() == name.lower()), None) \
                or suggest(name, list(frame.columns))
            hint = (f"; did you mean '{near}'?" if near else
                    f" (columns: {', '.join(map(str, frame.columns[:12]))}"
                    f"{', ...' if len(frame.columns) > 12 else ''})")
            raise ConfigError(f"{key}: {where} has no column '{name}'{hint}")


def choose_columns(cfg: Mapping[str, Any], frame: pd.DataFrame, where: str
                   ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(target columns, feature columns) named by data.target and data.features."""
    target = cfg["target"]
    if target is None or (not isinstance(target, str) and not list(target)):
        raise ConfigError(f"data=table needs data.target=COLUMN, the column of {where} to "
                          f"predict (columns: {', '.join(map(str, frame.columns[:12]))}).")
    targets = (str(target),) if isinstance(target, str) else tuple(str(t) for t in target)
    _known(targets, frame, "data.target", where)
    if cfg["features"] is None:
        features = tuple(c for c in frame.columns if c not in targets)
    else:
        features = tuple(str(f) for f in cfg["features"])
        _known(features, frame, "data.features", where)
        both = [f for f in features if f in targets]
        if both:
            raise ConfigError(f"data.features: column '{both[0]}' is also data.target; "
                              "a column cannot be both an input and what is predicted.")
    if not features:
        raise ConfigError(f"{where} has no column left as an input besides data.target.")
    return targets, features


def _blank(column: pd.Series) -> pd.Series:
    """Missing cells: NaN/null, and text cells holding only spaces."""
    import pandas as pd

    missing = column.isna()
    if _categorical(column) and not pd.api.types.is_bool_dtype(column):
        missing |= column.astype(str).str.strip().eq("")
    return missing


def handle_missing(frame: pd.DataFrame, used: Sequence[str], setting: str, where: str
                   ) -> tuple[pd.DataFrame, int]:
    """The table without missing cells in `used` columns: refused (naming each column and how
    many rows), or, with data.missing=drop, those rows dropped (and how many said)."""
    if not any(_categorical(frame[col]) or frame[col].hasnans for col in used):
        return frame, 0  # all numbers, none missing: the common case, a column at a time
    blanks = {col: _blank(frame[col]) for col in used}
    counts = {col: int(m.sum()) for col, m in blanks.items() if m.any()}
    if not counts:
        return frame, 0
    if setting != "drop":
        named = ", ".join(f"column '{c}' in {n:,} row{'s' if n > 1 else ''}"
                          for c, n in counts.items())
        raise ConfigError(f"{where} has missing values (NaN or empty cells): {named}; fill "
                          "them or set data.missing=drop to drop those rows.")
    rows = np.logical_or.reduce([blanks[c].to_numpy() for c in counts])
    kept = frame.loc[~rows]
    if kept.empty:
        raise ConfigError(f"{where}: every row has a missing value in "
                          f"{', '.join(repr(c) for c in counts)}; nothing is left to train on.")
    return kept, int(rows.sum())


def categories_of(frame: pd.DataFrame, features: Sequence[str]) -> dict[str, list[str]]:
    """The categories of every one-hot feature column, sorted (as the text they print as)."""
    return {col: sorted(set(frame[col].astype(str))) for col in features
            if _categorical(frame[col])}


def features_of(frame: pd.DataFrame, columns: Columns, where: str) -> np.ndarray:
    """(rows, features) float32: numeric columns as they are, the others one-hot encoded with
    the training table's categories (a category it lacks is refused)."""
    width = len(columns.names)
    # column-major: each column is written in one contiguous stretch (a row-major array would
    # take a strided write per column, ten times slower on a million rows)
    x = np.empty((len(frame), width), dtype=np.float32, order="F")
    at = 0
    for col in columns.features:
        values = frame[col]
        if col not in columns.categories:
            if _categorical(values):
                raise ConfigError(f"{where}: column '{col}' holds text, but it is a number "
                                  "in the training table.")
            # cast while copying: no float32 temporary of the column
            np.copyto(x[:, at], values.to_numpy(), casting="unsafe")
            at += 1
            continue
        cats = columns.categories[col]
        text = values.astype(str).to_numpy()
        codes = np.searchsorted(cats, text)
        codes = np.minimum(codes, len(cats) - 1)
        unseen = np.asarray(cats, dtype=object)[codes] != text
        if unseen.any():
            raise ConfigError(f"{where}: column '{col}' holds '{text[unseen][0]}', a category "
                              f"the training table lacks (it has {', '.join(cats[:10])}).")
        block = np.zeros((len(frame), len(cats)), dtype=np.float32)
        block[np.arange(len(frame)), codes] = 1.0
        x[:, at:at + len(cats)] = block
        at += len(cats)
    return x


def inputs_of(frame: pd.DataFrame, columns: Columns, where: str) -> np.ndarray | ColumnInputs:
    """The inputs for assemble: a table of numbers alone as its own columns (assemble gathers
    each split's rows from them, no copy of the whole table), else features_of's array."""
    if not columns.categories:
        arrays = [frame[col].to_numpy() for col in columns.features]
        if all(a.dtype.kind in "iuf" and a.ndim == 1 for a in arrays):
            return ColumnInputs(tuple(arrays))
    return features_of(frame, columns, where)  # one-hot columns, or text to refuse


def target_of(frame: pd.DataFrame, targets: Sequence[str]) -> np.ndarray:
    """(rows,) the raw values of one target column (labels or numbers), (rows, k) floats of
    several."""
    import pandas as pd

    if len(targets) == 1:
        column = frame[targets[0]]
        if isinstance(column.dtype, pd.CategoricalDtype) or not (
                pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)):
            return column.astype(str).to_numpy(dtype=object)
        return column.to_numpy()
    text = [col for col in targets if _categorical(frame[col])]
    if text:
        what = "booleans" if pd.api.types.is_bool_dtype(frame[text[0]]) else "text"
        raise ConfigError(f"data.target: column '{text[0]}' holds {what}, but several target "
                          "columns are regression outputs and must hold numbers (a column of "
                          "class labels is a target on its own).")
    return frame[list(targets)].to_numpy(dtype=np.float32)


def table_samples(cfg: Mapping[str, Any], frame: pd.DataFrame, where: str,
                  columns: Columns | None = None) -> tuple[Samples, Columns, int]:
    """Samples of one table, and the columns decided from it (from the training table when
    `columns` is given: val and test files are read with the training table's encoding)."""
    if columns is None:
        targets, features = choose_columns(cfg, frame, where)
    else:
        targets, features = columns.target, columns.features
        _known([*targets, *features], frame, "data.target/data.features", where)
    frame, dropped = handle_missing(frame, [*features, *targets], str(cfg["missing"]), where)
    if columns is None:
        columns = Columns(targets, features, categories_of(frame, features))
    return Samples(inputs_of(frame, columns, where), target_of(frame, targets), where), \
        columns, dropped


def _target_phrase(targets: Sequence[str]) -> str:
    return (f"column '{targets[0]}'" if len(targets) == 1
            else f"columns {', '.join(repr(t) for t in targets)}")


def _user_function(spec: str) -> Any:
    """The function `module.name` of data._target_, imported as python would find it."""
    module_name, _, attr = str(spec).rpartition(".")
    if not module_name:
        raise ConfigError(f"data._target_={spec} must name a function as module.function, "
                          "e.g. mymodule.load.")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        raise ConfigError(f"data._target_={spec}: no module named '{err.name}' (a module of "
                          "your own must be in the current folder or on PYTHONPATH).") from None
    except Exception as err:  # the user's module failed while importing: say how
        raise ConfigError(f"data._target_={spec}: importing {module_name} failed: "
                          f"{type(err).__name__}: {err}") from None
    if not callable(getattr(module, attr, None)):
        near = suggest(attr, [n for n in dir(module) if not n.startswith("_")])
        hint = f"; did you mean {module_name}.{near}?" if near else "."
        raise ConfigError(f"data._target_={spec}: {module_name} has no function '{attr}'{hint}")
    return getattr(module, attr)


def call_user(cfg: Mapping[str, Any], own_keys: Sequence[str]) -> tuple[Any, set[str]]:
    """Call data._target_ with the keys of the `data` node that its signature names and the
    keys added to the node that data=table itself does not have; what it returned, and the
    keys it was given."""
    spec = str(cfg["_target_"])
    func = _user_function(spec)
    try:
        params = inspect.signature(func).parameters
    except (TypeError, ValueError):
        params = {}
    # keys it names, and every key the user added to the node (+data.KEY=...): nothing set is
    # dropped unread, so one it does not take is refused by the bind below
    keys = {k: v for k, v in cfg.items() if k not in ("_target_", "name")
            and (k in params or k not in own_keys)}
    try:
        inspect.signature(func).bind(**keys)
    except TypeError as err:
        raise ConfigError(f"data._target_={spec}{inspect.signature(func)} cannot be called "
                          f"with {sorted(keys) or 'no keys'}: {err}.") from None
    except ValueError:
        pass
    return func(**keys), set(keys)


def refuse_unread(cfg: Mapping[str, Any], keys: Sequence[str], taken: set[str], what: str
                  ) -> None:
    """A key of data=table set by the user that neither the function took nor `what` it
    returned is read by: refused, as every setting nothing reads is."""
    for key in keys:
        if cfg[key] is not None and key not in taken:
            raise ConfigError(f"data.{key}={cfg[key]} is read by nothing: "
                              f"data._target_={cfg['_target_']} returned {what} and does not "
                              f"take '{key}'; drop data.{key}.")


# The keys of conf/data/table.yaml: a user function taking **kwargs is handed only the others.
TABLE_KEYS = ("name", "_target_", "path", "target", "features", "task", "missing", "val_path",
              "test_path", "val_fraction", "test_fraction", "n_train", "seed", "batch_size",
              "augment")


@dataclass(frozen=True)
class TableFile:
    """data=table: see the module's docstring."""

    def build(self, cfg: Mapping[str, Any], device: torch.device | str) -> Data:
        import pandas as pd
        if cfg["_target_"]:
            where = f"{cfg['_target_']}()"
            made, taken = call_user(cfg, TABLE_KEYS)
            if not isinstance(made, pd.DataFrame):
                # (x, y) says what is input and what target: no column is chosen or read
                refuse_unread(cfg, ("path", "target", "features", "val_path", "test_path"),
                              taken, "arrays (x, y)")
                return self._arrays(cfg, device, made, where)
            refuse_unread(cfg, ("path",), taken, "the table")
            if made.empty:
                raise ConfigError(f"{where} returned an empty DataFrame.")
            made.columns = [str(c) for c in made.columns]
            frame = made
        else:
            if not cfg["path"]:
                raise ConfigError("data=table needs data.path=FILE (a .csv, .tsv or .parquet "
                                  "file), or data._target_=module.function returning a "
                                  "DataFrame.")
            where = str(cfg["path"])
            frame = read_frame(cfg["path"])
        pool, columns, dropped = table_samples(cfg, frame, where)
        others = {}
        for part in ("val", "test"):
            if cfg[f"{part}_path"]:
                path = str(cfg[f"{part}_path"])
                samples, _, more = table_samples(
                    cfg, read_frame(path, f"data.{part}_path"), path, columns)
                others[part] = samples
                dropped += more
        task, why = infer_task(pool.y, str(cfg["task"]), _target_phrase(columns.target))
        if dropped:
            log.info(f"data.missing=drop: dropped {dropped:,} rows with missing values")
        facts = {"columns": list(columns.features), "features": columns.names,
                 "categories": columns.categories,
                 "target": list(columns.target), "dropped_rows": dropped}
        return assemble(cfg, device, pool, kind="vector", task=task, why=why,
                        val=others.get("val"), test=others.get("test"), facts=facts)

    def _arrays(self, cfg: Mapping[str, Any], device: torch.device | str, made: Any,
                where: str) -> Data:
        """A user function's (x, y) of arrays (numpy or torch)."""
        if not (isinstance(made, tuple | list) and len(made) == 2):
            raise ConfigError(f"{where} returned {type(made).__name__}; data._target_ must "
                              "return a pandas DataFrame or a tuple (x, y) of arrays.")
        x, y = (np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v)
                for v in made)
        if x.dtype.kind not in "biuf":
            raise ConfigError(f"{where} returned x of type {x.dtype}; inputs must be numbers.")
        if x.ndim < 2:
            raise ConfigError(f"{where} returned x of shape {tuple(x.shape)}; x is (N, ...) "
                              "with one sample a row.")
        # decided as data=arrays decides them: the same (x, y) means the same run either way
        kind, kind_why = decide_kind(tuple(x.shape), "auto")
        task, why = decide_task(y, str(cfg["task"]), f"the y that {where} returned")
        return assemble(cfg, device, Samples(x, y, where), kind=kind, task=task, why=why,
                        facts={"kind": kind_why})
