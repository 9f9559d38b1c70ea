"""The formats of `dltrain export`: what each file holds, how it is written, and how the check
reads it back with the format's own reader.

ONNX and TorchScript hold `LoadedRun.in_units` (the input normalisation, the model and the way
back into the data's units) with the run's card inside (ONNX metadata, a TorchScript extra
file); safetensors holds the model's weights alone, beside the card as JSON. One writer and
one reader a format, registered in FORMATS; dltrain.use.export runs and checks them.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dltrain.errors import ConfigError
from dltrain.rules import suggest

if TYPE_CHECKING:  # torch is imported where a run is loaded: a bad --format answers without it
    import torch

    from dltrain.use.loaded import LoadedRun

INSTALL = "pip install 'dltrain[export]'"

# What the output of InUnits is, by task: the name of the graph's output and its meaning.
OUTPUTS = {
    "classification": ("probabilities", "the probability of each class (N, classes)"),
    "regression": ("values", "the predictions in the data's own units"),
    "language_model": ("logits", "the logits of the next token (N, T, vocabulary)"),
    "reconstruction": ("reconstruction", "the reconstructed inputs in raw units"),
}


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
