"""Continuing a run: which checkpoint, whether anything is left to do, and putting every
state back (model, optimiser, schedule, scaler, random streams) where the checkpoint left it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dltrain.config import written
from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.runtime import derived_seed
from dltrain.train.checkpoint import load_checkpoint, set_rng_state
from dltrain.train.decisions import finished as budget_spent
from dltrain.train.distributed import SINGLE, Dist
from dltrain.train.state import Parts, Settings, TrainState


def resume_payload(run_dir: Path, resume: bool, policy: str) -> dict[str, Any] | None:
    """The checkpoint to continue from: asked for, or found by trainer.resume=auto (`policy`)."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume or (policy == "auto" and last.exists()):
        return load_checkpoint(last)
    return None


def load_weights(model: torch.nn.Module, payload: dict[str, Any],
                 model_cfg: Mapping[str, Any]) -> None:
    """The checkpoint's weights into `model`, built from `model_cfg`; a model whose shapes
    differ is refused naming the model keys that changed from the run's own config."""
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        saved = (payload.get("config") or {}).get("model") or {}
        now = dict(model_cfg)
        changed = [f"model.{k}={written(now.get(k))} instead of the run's {written(saved.get(k))}"
                   for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
        why = ", ".join(changed) if changed else str(err).splitlines()[0]
        raise ConfigError(f"The checkpoint's weights do not fit the model this config builds "
                          f"({why}); keep the run's model settings.") from None


def restore(parts: Parts, spec: DataSpec, payload: dict[str, Any], config: Mapping[str, Any],
            d: Dist = SINGLE) -> TrainState:
    """Put the model, optimiser, schedule, scaler and RNGs back where a checkpoint left them
    (each process of a data-parallel job its own RNG state). `config` is the run's, plain."""
    saved_spec = DataSpec.from_dict(payload["spec"])
    if saved_spec != spec:
        raise ConfigError("The checkpoint was trained on other data than this config builds "
                          f"({saved_spec.name} {saved_spec.input_shape} -> {spec.name} "
                          f"{spec.input_shape}); resume with the run's own data settings.")
    load_weights(parts.model, payload, config["model"])
    assert parts.optimizer is not None
    parts.optimizer.load_state_dict(payload["optimizer"])
    if parts.scheduler is not None and payload.get("scheduler") is not None:
        parts.scheduler.load_state_dict(payload["scheduler"])
    if parts.scaler is not None and payload.get("scaler") is not None:
        parts.scaler.load_state_dict(payload["scaler"])
    state = TrainState.from_dict(payload["state"])
    ranks = payload.get("rng_ranks") or []
    if len(ranks) == d.world:
        set_rng_state(ranks[d.rank])
    else:  # saved by another number of processes: rank 0's stream, forked from this step
        set_rng_state(payload["rng"])
        fork_rng(int(config["trainer"]["seed"]), d, state.step)
    return state


def fork_rng(seed: int, d: Dist, step: int = 0) -> None:
    """Give each process of a data-parallel job a random stream of its own, once the model is
    initialised (alike on every rank): dropout masks must differ between the processes' shares
    of a batch. Rank 0 keeps the stream one process would have."""
    if d.rank:
        torch.manual_seed(derived_seed(seed, "rank", d.rank, step))


def finished(state: TrainState, settings: Settings) -> str | None:
    """Why a checkpointed run has nothing left to do under `settings`, or None."""
    if state.stopped_early:
        return "it stopped early"
    if budget_spent(state, settings):
        return f"it reached epoch {state.epoch}, step {state.step}"
    return None
