"""`dltrain export`: a run's model in a file that runs without dltrain, checked before it is kept.

ONNX and TorchScript hold `LoadedRun.in_units` — the input normalisation, the model and the
way back into the data's units — so a user feeds raw inputs and reads values in their units;
the batch axis is dynamic. safetensors holds the model's weights alone, beside a JSON sidecar
(the "card") that says how to rebuild the model and apply the normalisation. ONNX and
TorchScript carry the same card inside (ONNX metadata, a TorchScript extra file).

Every export is written to a temporary name, read back with the format's own reader
(onnxruntime, torch.jit.load, a freshly built model loaded with the safetensors weights and
the sidecar's statistics) and compared with the run's own model on 64 samples; only an export
that agrees to 1e-4 of the outputs' scale is renamed into place. The samples are the run's
test split when its data can be rebuilt as it was, else raw inputs drawn from the
normalisation statistics — the printed line says which.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dltrain.errors import ConfigError
from dltrain.io import current_umask, shared_mode
from dltrain.rules import suggest

if TYPE_CHECKING:  # torch is imported where a run is loaded: a bad --format answers without it
    import torch

    from dltrain.use.loaded import LoadedRun

N_SAMPLES = 64  # samples the check compares on
TOLERANCE = 1e-4  # the largest difference allowed, relative to the outputs' largest magnitude
EXAMPLE_BATCH = 2  # the batch the graph is traced with: not 1, which exporters specialise on
INSTALL = "pip install 'dltrain[export]'"

# What the output of InUnits is, by task: the name of the graph's output and its meaning.
OUTPUTS = {
    "classification": ("probabilities", "the probability of each class (N, classes)"),
    "regression": ("values", "the predictions in the data's own units"),
    "language_model": ("logits", "the logits of the next token (N, T, vocabulary)"),
    "reconstruction": ("reconstruction", "the reconstructed inputs in raw units"),
}


class ExportMismatch(Exception):
    """The export does not compute what the run's model computes (or could not be made):
    a failure of the export, not of the user's input — the command exits 1."""


@dataclass
class Samples:
    """Raw inputs (N, *spec.input_shape) for the check, and where they came from."""

    x: torch.Tensor
    source: str  # for the printed line: "64 test samples of the run's data", ...


@dataclass
class Exported:
    """What `export_run` wrote and how well it agreed with the run's model."""

    path: Path
    format: str
    samples: Samples
    max_abs: float  # the largest absolute difference from the run's model
    max_rel: float  # max_abs over the largest magnitude of the run's outputs
    checked_with: str  # the reader the check ran the export with
    sidecar: Path | None = None  # safetensors: the JSON card beside the weights

    def line(self) -> str:
        """One line for the terminal."""
        where = f"{self.path}" + (f" (+ {self.sidecar.name})" if self.sidecar else "")
        return (f"wrote {where}: checked with {self.checked_with} on {self.samples.source}; "
                f"largest difference {self.max_abs:.3g} (relative {self.max_rel:.2g}, "
                f"limit {TOLERANCE:g})")


# ---------------------------------------------------------------------------------------------
# The samples of the check


def rebuilt_test(run: LoadedRun) -> Samples:
    """The first 64 samples of the run's test split, rebuilt from its config and put back into
    raw units (the data module hands them normalised). Raises ConfigError (or OSError) when
    the data cannot be rebuilt as the run had it."""
    import torch

    from dltrain.data import build_data
    from dltrain.training.resume import same_statistics
    from dltrain.use.loaded import per_feature, pixel_scale

    cfg = dict(run.config["data"])
    if "download" in cfg:
        cfg["download"] = False  # an export reads what is there; it fetches nothing
    data = build_data(cfg, torch.device("cpu"))
    if tuple(data.spec.input_shape) != tuple(run.spec.input_shape):
        raise ConfigError(f"its inputs are now {tuple(data.spec.input_shape)}, not "
                          f"{tuple(run.spec.input_shape)}")
    normalised = bool(data.norm.get("mean"))
    if normalised != bool(run.norm.get("mean")) or (
            normalised and not same_statistics(run.norm, data.norm)):
        raise ConfigError("its statistics differ from the run's: the data changed since")
    x = data.test.x[:N_SAMPLES]
    if len(x) < EXAMPLE_BATCH:
        raise ConfigError(f"its test split holds {len(x)} sample(s)")
    if data.norm.get("mean"):
        spec = run.spec
        x = (x * per_feature(data.norm["std"], spec) + per_feature(data.norm["mean"], spec)) \
            * pixel_scale(data.facts)
    return Samples(x.contiguous(), f"{len(x)} test samples of the run's data")


def drawn(run: LoadedRun, seed: int = 0) -> torch.Tensor:
    """64 raw inputs drawn from the run's normalisation statistics: mean + std * noise, in
    the units of the stored data (times the pixel scale); token ids for a language model."""
    import torch

    from dltrain.use.loaded import per_feature, pixel_scale

    gen = torch.Generator().manual_seed(seed)
    spec = run.spec
    if spec.kind == "tokens":
        return torch.randint(0, int(spec.vocab_size or 2), (N_SAMPLES, *spec.input_shape),
                             generator=gen)
    noise = torch.randn((N_SAMPLES, *spec.input_shape), generator=gen)
    if not run.norm.get("mean"):
        return noise
    x = per_feature(run.norm["mean"], spec) + per_feature(run.norm["std"], spec) * noise
    return x * pixel_scale(run.facts)


def check_samples(run: LoadedRun) -> Samples:
    """The run's own test samples when its data can be rebuilt unchanged; otherwise raw
    inputs drawn from its statistics, and the line says why. Rebuilding reads the user's
    files as training did (seconds for most data); only a refusal of the data is taken as
    "not there" — any other error is a bug to see, not to hide."""
    try:
        return rebuilt_test(run)
    except (ConfigError, OSError) as err:
        why = str(err).rstrip(".") or "it cannot be read"
        if why[:2].istitle():  # "There is no ..." within the line; "MNIST ..." stays
            why = why[0].lower() + why[1:]
    return Samples(drawn(run), f"{N_SAMPLES} samples drawn from the normalisation statistics "
                               f"(the run's data could not be rebuilt: {why})")


# ---------------------------------------------------------------------------------------------
# The card: what a user of the file needs to know


def card(run: LoadedRun, fmt: str) -> dict[str, Any]:
    """The facts of the export as JSON: the spec, how the model was built, the normalisation
    and the target statistics, the features, categories and class names."""
    from dltrain import __version__
    from dltrain.use.loaded import pixel_scale

    spec = run.spec
    name, meaning = OUTPUTS.get(spec.task, ("outputs", "the model's outputs"))
    inside = fmt != "safetensors"
    facts = run.facts
    return {
        "dltrain": __version__,
        "format": fmt,
        "run": run.run_dir.resolve().name,
        "checkpoint": run.checkpoint.name,
        "test": run.summary.get("test"),  # the run's own test metrics, in the data's units
        "task": spec.task,
        "input": {
            "name": "x",
            "shape": ["batch", *spec.input_shape],
            "dtype": "int64" if spec.kind == "tokens" else "float32",
            "features": facts.get("features"),  # a table's encoded columns, in order
            "columns": facts.get("columns"),  # the table's own columns
            "categories": facts.get("categories"),  # one-hot columns: 0/1 per category
        },
        "output": {"name": name, "meaning": meaning, "class_names": list(spec.class_names),
                   "target": facts.get("target")},
        "normalisation": {
            "inside_the_graph": inside,
            "input": "(x / pixel_scale - mean) / std",
            "mean": run.norm.get("mean"), "std": run.norm.get("std"),
            "pixel_scale": pixel_scale(facts),
            "output": "y * target_std + target_mean" if run.target_scale else None,
            "target_mean": run.target_scale.mean.tolist() if run.target_scale else None,
            "target_std": run.target_scale.std.tolist() if run.target_scale else None,
        },
        "spec": spec.to_dict(),
        "model": run.config["model"],
        "init": run.config["init"],
        "facts": facts,
    }


def _card_json(run: LoadedRun, fmt: str) -> str:
    return json.dumps(card(run, fmt), indent=2, default=str) + "\n"


# ---------------------------------------------------------------------------------------------
# Writers and readers, one pair per format


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """The exporters' chatter (deprecation notices, progress lines, torchvision's absence)
    off while they run; their errors still come through."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), open(os.devnull, "w") as null, \
                contextlib.redirect_stdout(null):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def write_onnx(run: LoadedRun, path: Path, example: torch.Tensor) -> None:
    """torch.onnx.export's torch.export-based exporter (`dynamo=True`, the default and the
    supported one since PyTorch 2.9; it needs onnxscript, part of the `export` extra and
    offline). The TorchScript-based one (`dynamo=False`) is deprecated. The weights are kept
    inside the one file (external_data=False: fine below protobuf's 2 GB)."""
    import onnx
    import torch

    name = OUTPUTS.get(run.spec.task, ("outputs",))[0]
    with _quiet():
        torch.onnx.export(run.in_units, (example,), str(path), input_names=["x"],
                          output_names=[name], dynamo=True, external_data=False,
                          dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    model = onnx.load(str(path))
    model.doc_string = "dltrain export: raw inputs in, the data's own units out"
    entry = model.metadata_props.add()
    entry.key, entry.value = "dltrain", _card_json(run, "onnx")
    onnx.save(model, str(path))


def read_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]


def write_torchscript(run: LoadedRun, path: Path, example: torch.Tensor) -> None:
    """torch.jit.trace: any model dltrain builds traces (scripting would need every model's
    code to be TorchScript). PyTorch marks torch.jit as deprecated in favour of torch.export,
    but TorchScript is what torch.jit.load and C++ (libtorch) read, which is why it is asked
    for; the check below catches a trace that baked in the example's batch size."""
    import torch

    with _quiet(), torch.no_grad():
        traced = torch.jit.trace(run.in_units, (example,), check_trace=False)
        torch.jit.save(traced, str(path), _extra_files={"dltrain.json": _card_json(
            run, "torchscript")})


def read_torchscript(path: Path, x: torch.Tensor) -> np.ndarray:
    import torch

    with _quiet():
        module = torch.jit.load(str(path), map_location="cpu").eval()
    with torch.no_grad():
        return module(x).numpy()


def sidecar_of(path: Path) -> Path:
    """model.safetensors -> model.json, beside it."""
    return path.with_suffix(".json")


def write_safetensors(run: LoadedRun, path: Path, example: torch.Tensor) -> None:
    """The model's state dict (normalised inputs in, standardised outputs out: the card
    says how to get there) and its card beside it as JSON. Tensors are copied so that tied
    weights, which safetensors refuses to save twice from one storage, are saved as two."""
    from safetensors.torch import save_file

    weights = {k: v.detach().cpu().clone().contiguous() for k, v in run.model.state_dict().items()}
    save_file(weights, str(path), metadata={"format": "pt", "dltrain": "the card is the JSON "
                                                                      "file beside this one"})
    sidecar_of(path).write_text(_card_json(run, "safetensors"), encoding="utf-8")


def read_safetensors(path: Path, x: torch.Tensor) -> np.ndarray:
    """What a user does with the files: build the model from the card, load the weights,
    apply the card's normalisation and target statistics."""
    import torch
    from safetensors.torch import load_file

    from dltrain.data.spec import DataSpec, TargetScale
    from dltrain.models import build_model
    from dltrain.use.loaded import InUnits

    info = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
    spec = DataSpec.from_dict(info["spec"])
    model = build_model(info["model"], info["init"], spec)
    model.load_state_dict(load_file(str(path)))
    stats = info["normalisation"]
    target = (TargetScale.from_dict({"mean": stats["target_mean"], "std": stats["target_std"]})
              if stats["target_mean"] is not None else None)
    norm = {"mean": stats["mean"], "std": stats["std"]} if stats["mean"] else {}
    module = InUnits(model.eval(), spec, norm, target, stats["pixel_scale"]).eval()
    with torch.no_grad():
        return module(x).numpy()


@dataclass(frozen=True)
class Format:
    """One export format: its default file name, the packages it needs, how it is written and
    how the check reads it back."""

    filename: str
    needs: tuple[str, ...]
    write: Callable[[LoadedRun, Path, torch.Tensor], None]
    read: Callable[[Path, torch.Tensor], np.ndarray]
    checked_with: str


FORMATS: dict[str, Format] = {
    "onnx": Format("model.onnx", ("onnx", "onnxscript", "onnxruntime"), write_onnx, read_onnx,
                   "onnxruntime"),
    "torchscript": Format("model.pt", (), write_torchscript, read_torchscript,
                          "torch.jit.load"),
    "safetensors": Format("model.safetensors", ("safetensors",), write_safetensors,
                          read_safetensors, "a model rebuilt from its JSON card"),
}


def check_format(fmt: str) -> Format:
    """The format named, its packages importable; else one sentence."""
    if fmt not in FORMATS:
        near = suggest(fmt, FORMATS)
        raise ConfigError(f"--format {fmt} is not one of {', '.join(FORMATS)}"
                          + (f"; did you mean {near}?" if near else "."))
    fmt_ = FORMATS[fmt]
    missing = []
    for package in fmt_.needs:
        try:
            importlib.import_module(package)
        except ImportError:
            missing.append(package)
    if missing:
        raise ConfigError(f"--format {fmt} needs the packages {', '.join(fmt_.needs)} "
                          f"({', '.join(missing)} not installed): {INSTALL}.")
    return fmt_


# ---------------------------------------------------------------------------------------------
# The export


def difference(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    """The largest absolute difference, and that over the largest magnitude of `want`;
    a mismatch of shape or of where the values are not finite counts as infinite."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape or not np.array_equal(np.isfinite(got), np.isfinite(want)):
        return math.inf, math.inf
    finite = np.isfinite(want)
    if not finite.any():
        return 0.0, 0.0
    diff = float(np.max(np.abs(got[finite] - want[finite])))
    scale = float(np.max(np.abs(want[finite])))
    return diff, diff / max(scale, float(np.finfo(np.float32).tiny))


def _temporary(path: Path) -> Path:
    """An empty file beside `path`, named as a hidden temporary, with the mode the umask gives
    a new file (mkstemp makes 0600, which the rename would keep)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    shared_mode(fd)
    os.close(fd)
    return Path(name)


def export_run(run_dir: Path | str, fmt: str, out: Path | str | None = None) -> Exported:
    """Export the run in `run_dir` as `fmt` to `out` (default RUN_DIR/export/<model file>),
    check it on 64 samples and keep it only if it agrees (ExportMismatch otherwise, with
    nothing left at `out` by this call)."""
    import torch

    from dltrain.use.loaded import load_run

    spec_fmt = check_format(fmt)
    run = load_run(run_dir, "cpu")
    path = Path(out) if out is not None else Path(run_dir) / "export" / spec_fmt.filename
    if path.is_dir():
        raise ConfigError(f"--out {path} is a directory; give the file to write, e.g. "
                          f"{path / spec_fmt.filename}.")
    if fmt == "safetensors" and path.suffix == ".json":
        raise ConfigError(f"--out {path}: the weights' file cannot end in .json, the name of "
                          "the JSON card written beside it; use e.g. model.safetensors.")
    samples = check_samples(run)
    with torch.no_grad():
        want = run.in_units(samples.x).numpy()  # before writing: the export cannot touch it
    made = [d for d in (path.parent, *path.parent.parents) if not d.exists()]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary(path)
    written = [tmp, sidecar_of(tmp)] if fmt == "safetensors" else [tmp]
    try:
        try:
            spec_fmt.write(run, tmp, samples.x[:EXAMPLE_BATCH].clone())
        except Exception as err:  # the exporter's refusal of this model: the export failed
            first = str(err).strip().splitlines()[0] if str(err).strip() else ""
            raise ExportMismatch(f"{fmt} could not export this model ({type(err).__name__}: "
                                 f"{first}); nothing was written to {path}.") from err
        got = spec_fmt.read(tmp, samples.x)
        max_abs, max_rel = difference(got, want)
        if not max_rel <= TOLERANCE:
            raise ExportMismatch(
                f"the {fmt} export differs from the run's model by up to {max_abs:.3g} "
                f"(relative {max_rel:.2g}, more than {TOLERANCE:g}) on {samples.source}; "
                f"nothing was written to {path}.")
        for done in written:  # writers that replace the file (safetensors) make it 0600
            os.chmod(done, 0o666 & ~current_umask())
        sidecar = None
        if len(written) > 1:  # the card first: weights in place mean a complete export
            sidecar = sidecar_of(path)
            os.replace(written[1], sidecar)
        os.replace(tmp, path)
    except BaseException:
        for leftover in written:
            leftover.unlink(missing_ok=True)
        for folder in made:  # the folders this call made, innermost first, if still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return Exported(path, fmt, samples, max_abs, max_rel, spec_fmt.checked_with, sidecar)
