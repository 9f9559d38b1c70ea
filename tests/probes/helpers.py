"""Reading what a probe left in a run directory, the way a user (or TensorBoard) would."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml

from dltrain.cli import conf_dir
from dltrain.data import build_data
from dltrain.losses import build_loss, loss_spec
from dltrain.models import build_model
from dltrain.training.checkpoint import load_checkpoint


def probe_options(name: str, **changed) -> dict:
    """A probe's options as conf/probe/NAME.yaml sets them (their only defaults), `changed`
    replacing some."""
    options = yaml.safe_load((conf_dir() / "probe" / f"{name}.yaml").read_text())[name]
    return {**options, **changed}


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").open()]


def scalars_at(run_dir: Path, step: int, prefix: str) -> dict[str, float]:
    """Every logged scalar whose tag starts with `prefix`, at `step`."""
    found: dict[str, float] = {}
    for record in records(run_dir):
        if record["step"] == step:
            found.update({k: v for k, v in record.items() if k.startswith(prefix)})
    return found


def events(run_dir: Path):
    """TensorBoard's own reader over the run's event files, everything kept."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(Path(run_dir) / "tb"), size_guidance={"images": 0,
                                                                      "histograms": 0,
                                                                      "tensors": 0,
                                                                      "scalars": 0})
    acc.Reload()
    return acc


def rebuilt(cfg, weights: dict[str, torch.Tensor] | None = None):
    """(data, model, loss) as the run built them, the model holding `weights`."""
    data = build_data(cfg.data, "cpu")
    spec = loss_spec(cfg.loss, data.spec)
    model = build_model(cfg.model, cfg.init, spec)
    if weights is not None:
        model.load_state_dict(weights)
    model.eval()
    return data, model, build_loss(cfg.loss, spec)


def last_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(Path(run_dir) / "checkpoints" / "last.pt")["model"]
