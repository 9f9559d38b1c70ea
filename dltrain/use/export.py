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
normalisation statistics — the printed line says which. The formats themselves (what each
file holds, its writer and reader) are dltrain.use.formats'.
"""

from __future__ import annotations

import contextlib
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dltrain.errors import ConfigError
from dltrain.io import current_umask, shared_mode
from dltrain.use.formats import FORMATS, check_format, sidecar_of

__all__ = ["FORMATS", "ExportMismatch", "Exported", "check_format", "export_run"]

if TYPE_CHECKING:  # torch is imported where a run is loaded: a bad --format answers without it
    import torch

    from dltrain.use.loaded import LoadedRun

N_SAMPLES = 64  # samples the check compares on
TOLERANCE = 1e-4  # the largest difference allowed, relative to the outputs' largest magnitude
EXAMPLE_BATCH = 2  # the batch the graph is traced with: not 1, which exporters specialise on



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
