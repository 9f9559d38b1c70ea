"""Continuing a run: which checkpoint, whether anything is left to do, and putting every
state back (model, optimiser, schedule, scaler, random streams) where the checkpoint left it."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dltrain.config import written
from dltrain.data.spec import Data, DataSpec, TargetScale
from dltrain.errors import ConfigError
from dltrain.runtime import derived_seed
from dltrain.training.best_pair import settle_best
from dltrain.training.checkpoint import RESUMABLE, load_checkpoint, set_rng_state
from dltrain.training.decisions import finished as budget_spent
from dltrain.training.distributed import SINGLE, Dist
from dltrain.training.state import Parts, Settings, TrainState


def resume_payload(run_dir: Path, resume: bool, policy: str) -> dict[str, Any] | None:
    """The checkpoint to continue from: asked for, or found by trainer.resume=auto (`policy`);
    checked (dltrain.training.checkpoint), and its best.pt brought in line with it
    (best_pair.settle_best) before anything trains on."""
    last = run_dir / "checkpoints" / "last.pt"
    if resume or (policy == "auto" and last.exists()):
        payload = load_checkpoint(last, RESUMABLE)
        settle_best(last.parent, payload)
        return payload
    return None


def load_weights(model: torch.nn.Module, payload: dict[str, Any],
                 model_cfg: Mapping[str, Any], source: str = "The checkpoint") -> None:
    """The checkpoint's weights into `model`, built from `model_cfg`; a model whose shapes
    differ is refused naming the model keys that changed from the run's own config, and
    weights that are not finite naming the first such tensor (`source`: the checkpoint's
    name in that sentence)."""
    check_finite(model, payload["model"], source)
    adopt_dtypes(model, payload["model"])
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


def adopt_dtypes(model: torch.nn.Module, weights: Mapping[str, torch.Tensor]) -> None:
    """Each parameter in the floating dtype it was saved in: a run whose L-BFGS phase trains in
    float64 (optim=adam_lbfgs) resumes in float64, bit for bit, rather than rounded to the
    float32 the model is built in."""
    for name, p in model.named_parameters():
        saved = weights.get(name)
        if saved is not None and saved.is_floating_point() and saved.dtype != p.dtype \
                and p.is_floating_point():
            p.data = p.data.to(saved.dtype)


def check_finite(model: torch.nn.Module, weights: Mapping[str, torch.Tensor], source: str
                 ) -> None:
    """Refuse weights with NaN or infinity in a parameter, or NaN in a buffer: nothing can be
    trained on or scored with them. A run never saves such weights (its checkpoints follow
    finite losses only), so they come from a damaged or hand-made file. A buffer may hold
    infinity by design (an attention mask of -inf), a parameter may not."""
    params = {name for name, _ in model.named_parameters()}
    for name, t in weights.items():
        if not (t.is_floating_point() or t.is_complex()) or not t.numel():
            continue
        bad = not bool(torch.isfinite(t).all()) if name in params else bool(torch.isnan(t).any())
        if bad:
            raise ConfigError(f"{source} holds non-finite weights (NaN or infinity in {name}); "
                              "they cannot be trained on or evaluated.")


def check_statistics(payload: Mapping[str, Any], data: Data) -> None:
    """Refuse data normalised otherwise than the checkpoint's was (the training file changed,
    or a setting that picks the training samples): its weights would see inputs on another
    scale, and predict regression targets in other units."""
    saved = {k: v for k, v in (payload.get("norm") or {}).items() if k != "target"}
    if saved.get("mean") is not None and data.norm.get("mean") is not None \
            and not same_statistics(saved, data.norm):
        raise ConfigError(f"The checkpoint's inputs were normalised with other statistics "
                          f"({_stats(saved)}) than the data this config builds "
                          f"({_stats(data.norm)}); use the run's own training data.")
    check_target_scale(payload, data.target_scale)


def check_target_scale(payload: Mapping[str, Any], scale: TargetScale | None) -> None:
    """Refuse data whose regression targets are standardised otherwise than the checkpoint's
    were: every metric put back in the data's units would be wrong."""
    saved = (payload.get("norm") or {}).get("target")
    now = scale.to_dict() if scale is not None else None
    if saved is None and now is None:
        return
    if saved is not None and now is not None and same_statistics(saved, now):
        return
    raise ConfigError(f"The checkpoint's regression targets were standardised with other "
                      f"statistics ({_stats(saved)}) than the data this config builds "
                      f"({_stats(now)}); use the run's own training data.")


def same_statistics(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """The same statistics up to float rounding: apart by less than 1e-5 of a std, where a
    difference would show in the metrics (a mean near zero has no relative precision)."""
    std = np.asarray(b["std"], dtype=np.float64)
    return all(np.shape(a[k]) == np.shape(b[k]) and bool(np.all(
        np.abs(np.asarray(a[k], dtype=np.float64) - np.asarray(b[k], dtype=np.float64))
        <= 1e-5 * np.abs(std))) for k in ("mean", "std"))


def _stats(scale: Mapping[str, Any] | None) -> str:
    """A target scale in a few words: its first means and stds."""
    if scale is None:
        return "none"
    return (f"mean {np.ravel(scale['mean'])[:3].tolist()}, "
            f"std {np.ravel(scale['std'])[:3].tolist()}")


def restore(parts: Parts, data: Data, spec: DataSpec, payload: dict[str, Any],
            config: Mapping[str, Any], d: Dist = SINGLE) -> TrainState:
    """Put the model, optimiser, schedule, scaler and RNGs back where a checkpoint left them
    (each process of a data-parallel job its own RNG state). `config` is the run's, plain;
    `data` the rebuilt data, whose statistics must be the checkpoint's; `spec` the model's
    view of it."""
    saved_spec = DataSpec.from_dict(payload["spec"])
    if saved_spec != spec:
        raise ConfigError("The checkpoint was trained on other data than this config builds "
                          f"({saved_spec.name} {saved_spec.input_shape} -> {spec.name} "
                          f"{spec.input_shape}); resume with the run's own data settings.")
    check_statistics(payload, data)
    load_weights(parts.model, payload, config["model"], "checkpoints/last.pt")  # a resume's
    assert parts.optimizer is not None
    # the entries below passed load_checkpoint's check of their kind; what they hold inside
    # is the objects' own business, and a mismatch there is a sentence too, not a traceback
    with _refusing("optimiser state", "the run's own optim settings"):
        parts.optimizer.load_state_dict(payload["optimizer"])
    with _refusing("schedule state", "the run's own sched settings"):
        if parts.scheduler is not None and payload.get("scheduler") is not None:
            parts.scheduler.load_state_dict(payload["scheduler"])
    with _refusing("gradient scaler state", "the run's own trainer.precision"):
        if parts.scaler is not None and payload.get("scaler") is not None:
            parts.scaler.load_state_dict(payload["scaler"])
    state = TrainState.from_dict(payload["state"])
    ranks = payload.get("rng_ranks") or []
    with _refusing("random states", "a checkpoint that dltrain wrote"):
        if len(ranks) == d.world:
            set_rng_state(ranks[d.rank])
        else:  # saved by another number of processes: rank 0's stream, forked from this step
            set_rng_state(payload["rng"])
            fork_rng(int(config["trainer"]["seed"]), d, state.step)
    return state


@contextmanager
def _refusing(what: str, instead: str) -> Iterator[None]:
    """A checkpoint's `what` that its object cannot take, as one sentence (ConfigError)."""
    try:
        yield
    except torch.OutOfMemoryError:  # a RuntimeError, but the machine's, not the file's
        raise
    except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as err:
        raise ConfigError(f"The checkpoint's {what} cannot be restored in this run "
                          f"({type(err).__name__}); resume with {instead}.") from None


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
