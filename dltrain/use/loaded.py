"""A finished run, rebuilt from its checkpoint: the model with its weights, its spec, config,
normalisation and summary — and `InUnits`, the model between the input normalisation and
the output's way back into the data's units.

Nothing of the training data is read: the checkpoint carries the spec, the normalisation,
the target statistics and what the reader of the user's files decided (checkpoint_meta).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dltrain.data.spec import DataSpec, TargetScale
from dltrain.errors import ConfigError
from dltrain.models import build_model
from dltrain.runtime import resolve_device
from dltrain.training.best_pair import settle_best
from dltrain.training.checkpoint import load_checkpoint
from dltrain.training.resume import load_weights


@dataclass
class LoadedRun:
    """What a run left, ready to use: `model` (eval mode, on `device`) takes normalised
    inputs as training gave them; `in_units` takes raw inputs and answers in the data's units
    (see InUnits)."""

    run_dir: Path
    checkpoint: Path
    model: nn.Module
    spec: DataSpec
    config: dict[str, Any]
    norm: dict[str, Any]
    facts: dict[str, Any]
    summary: dict[str, Any]
    device: torch.device
    target_scale: TargetScale | None = None
    in_units: nn.Module = field(init=False)

    def __post_init__(self) -> None:
        self.in_units = InUnits(self.model, self.spec, self.norm, self.target_scale,
                                pixel_scale(self.facts)).to(self.device).eval()


def pixel_scale(facts: Mapping[str, Any]) -> float:
    """What raw inputs were divided by before normalisation: 255 for 8-bit pixels of image
    files, 1 for every other input (the reader says so in its facts)."""
    return float(facts.get("pixel_scale", 1.0))


def run_checkpoint(run_dir: Path) -> Path:
    """best.pt, else last.pt; a directory without either is refused in one sentence."""
    folder = run_dir / "checkpoints"
    for name in ("best.pt", "last.pt"):
        if (folder / name).is_file():
            return folder / name
    if not run_dir.exists():
        raise ConfigError(f"There is no run directory {run_dir}.")
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is not a directory; give the directory of a dltrain run.")
    raise ConfigError(f"{run_dir} holds no checkpoint (checkpoints/best.pt or last.pt); is it "
                      "the directory of a dltrain run that trained at least until its first "
                      "validation?")


def load_run(run_dir: Path | str, device: str = "cpu") -> LoadedRun:
    """Rebuild the run in `run_dir` on `device` (auto|cpu|cuda|cuda:N|mps) from its best
    checkpoint (else its last)."""
    run_dir = Path(run_dir)
    path = settle_best(run_checkpoint(run_dir).parent) or run_checkpoint(run_dir)
    payload = load_checkpoint(path, ("model",))  # config and spec: said below
    config = payload.get("config") or {}
    if "model" not in config or "spec" not in payload:
        raise ConfigError(f"{path} does not say how its model was built (no config or spec); "
                          "it was not written by this version of dltrain.")
    spec = DataSpec.from_dict(payload["spec"])
    where = resolve_device(device)
    model = build_model(config["model"], config["init"], spec)
    load_weights(model, payload, config["model"], str(path))
    norm = dict(payload.get("norm") or {})
    target = norm.pop("target", None)
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    return LoadedRun(run_dir=run_dir, checkpoint=path, model=model.to(where).eval(), spec=spec,
                     config=config, norm=norm, facts=dict(payload.get("data") or {}),
                     summary=summary, device=where,
                     target_scale=TargetScale.from_dict(target) if target else None)


def per_feature(values: list[float], spec: DataSpec) -> torch.Tensor:
    """Per-feature (vectors) or per-channel (images, signals) statistics, shaped to broadcast
    against a batch (N, *input_shape)."""
    t = torch.tensor(values, dtype=torch.float32)
    if spec.kind == "vector" or len(values) == math.prod(spec.input_shape):
        return t.reshape(1, *spec.input_shape)
    return t.reshape(1, -1, *([1] * (len(spec.input_shape) - 1)))


class InUnits(nn.Module):
    """Raw inputs in, the data's own units out — the graph that predict runs and that the
    ONNX and TorchScript exports hold:

    - inputs: the values the data held before normalisation (table features, one-hot columns
      as 0/1; pixels as stored, e.g. 0-255; array values), shaped (N, *spec.input_shape);
      token ids for a language model;
    - classification: the probability of each class (N, K) (a one-logit binary model too);
    - regression: the predictions un-standardised, (N, outputs) or (N, *target_shape);
    - language model: the logits of the next token (N, T, vocab);
    - reconstruction: the reconstructed inputs in raw units, (N, *input_shape).
    """

    def __init__(self, model: nn.Module, spec: DataSpec, norm: Mapping[str, Any],
                 target_scale: TargetScale | None, scale: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.task = spec.task
        self.binary = spec.task == "classification" and spec.out_features == 1
        self.input_shape = tuple(spec.input_shape)
        self.target_shape = tuple(spec.target_shape)
        self.normalises = bool(norm.get("mean"))
        mean = per_feature(norm["mean"], spec) if self.normalises else torch.zeros(1)
        std = per_feature(norm["std"], spec) if self.normalises else torch.ones(1)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.register_buffer("scale", torch.tensor(float(scale)))
        scaled = target_scale is not None
        self.register_buffer("y_mean", target_scale.mean.reshape(1, -1) if scaled
                             else torch.zeros(1))
        self.register_buffer("y_std", target_scale.std.reshape(1, -1) if scaled
                             else torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.task == "language_model":
            out = self.model(x)
            return out[0] if isinstance(out, tuple) else out
        z = (x.float() / self.scale - self.mean) / self.std if self.normalises else x.float()
        out = self.model(z)
        if isinstance(out, tuple):  # a VAE's (reconstruction, mean, log-variance)
            out = out[0]
        if self.task == "classification":
            if self.binary:
                p = torch.sigmoid(out.reshape(-1, 1))
                return torch.cat([1 - p, p], dim=1)
            return torch.softmax(out, dim=1)
        if self.task == "reconstruction":
            z = out.reshape(-1, *self.input_shape)
            return (z * self.std + self.mean) * self.scale if self.normalises else z
        if self.target_shape:  # a field: standardised per channel (axis 1)
            y = out.reshape(-1, *self.target_shape)
            shape = (1, -1, *([1] * (len(self.target_shape) - 1)))
            return y * self.y_std.reshape(shape) + self.y_mean.reshape(shape)
        return out * self.y_std + self.y_mean
