"""Scoring trained weights: a run's test at its end, `dltrain eval RUN_DIR`, and the FLOP
count of a transformer's training."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from dltrain.config import plain, validate
from dltrain.io import write_json
from dltrain.job import build_job
from dltrain.log import Logger
from dltrain.perf import peak_tflops, training_flops_per_sample, utilisation
from dltrain.results import with_baseline
from dltrain.runtime import resolve_device, seed_everything
from dltrain.training.best_pair import settle_best
from dltrain.training.checkpoint import WEIGHTS, load_checkpoint
from dltrain.training.loop import autocast, evaluate
from dltrain.training.resume import check_finite, check_statistics, load_weights
from dltrain.training.state import Job

log = logging.getLogger("dltrain")


def test_best(job: Job, run_dir: Path, logger: Logger, step: int) -> dict[str, float]:
    """Score the best weights (else the last) on the test split, into the logs; the data's
    baseline for the test split (a series' naive_rmse) beside the model's metrics. best.pt
    is checked against last.pt first (best_pair.settle_best): the weights scored are those
    of the best step that summary.json names."""
    best = settle_best(run_dir / "checkpoints")
    if best is not None and best.name == "best.pt":  # else the last weights: the model's own
        weights = load_checkpoint(best, WEIGHTS)["model"]
        check_finite(job.parts.model, weights, str(best))
        job.parts.model.load_state_dict(weights)
    amp = autocast(job.device, job.settings.precision)
    test = with_baseline(evaluate(job.parts, job.data.test, job.spec.task,
                                  job.settings.eval_batch_size, amp,
                                  scale=job.data.target_scale),
                         job.data.facts, "test")
    logger.log_metrics({f"test/{k}": v for k, v in test.items()}, step)
    return test


def test_resolutions(job: Job, logger: Logger | None = None, step: int = 0
                     ) -> dict[str, Any]:
    """Operator data's test samples at other resolutions (data.test_resolution), scored by
    the model as it stands (test_best has loaded the best weights): {"test_resolutions":
    {"64x64": metrics, ...}}, logged as test@64x64/<metric>; {} for any other data."""
    from dltrain.data.operators import OperatorData

    data = job.data
    if not isinstance(data, OperatorData) or not data.resolutions:
        return {}
    amp = autocast(job.device, job.settings.precision)
    scored = {label: evaluate(job.parts, split, job.spec.task, job.settings.eval_batch_size,
                              amp, scale=data.target_scale)
              for label, split in data.resolutions.items()}
    if logger is not None:
        for label, metrics in scored.items():
            logger.log_metrics({f"test@{label}/{k}": v for k, v in metrics.items()}, step)
    return {"test_resolutions": scored}


def flops(job: Job, samples_per_s: float | None) -> dict[str, Any]:
    """Training FLOPs per sample, TFLOP/s achieved and MFU (where the device's peak is known)."""
    try:
        x, _ = next(iter(job.batches.epoch(0)))  # a training batch as the steps took them
        per_sample = training_flops_per_sample(job.parts.model, x)
    except Exception as err:  # a diagnostic: never at the cost of the run's summary
        log.warning(f"no FLOP count: {type(err).__name__}: {err}")
        return {}
    return utilisation(per_sample, samples_per_s, peak_tflops(job.device, job.settings.precision))


def evaluate_run(cfg: DictConfig, run_dir: Path | str) -> dict[str, Any]:
    """Rebuild a run from `cfg` (its own config), load best.pt (else last.pt), score the test
    and validation splits, and write eval.json."""
    run_dir = Path(run_dir)
    validate(cfg)
    config = plain(cfg)
    device = resolve_device(config["trainer"]["device"])
    checkpoints = run_dir / "checkpoints"
    path = settle_best(checkpoints) or checkpoints / "last.pt"  # best.pt as last.pt says
    payload = load_checkpoint(path, WEIGHTS)
    seed_everything(int(config["trainer"]["seed"]))
    job = build_job(config, device, with_optimizer=False)
    load_weights(job.parts.model, payload, config["model"], str(path))
    check_statistics(payload, job.data)  # the inputs and units it trained on
    amp = autocast(device, job.settings.precision)
    batch, scale, facts = job.settings.eval_batch_size, job.data.target_scale, job.data.facts
    result = {
        "checkpoint": str(path),
        "step": payload["state"]["step"],
        "task": job.spec.task,
        "test": with_baseline(evaluate(job.parts, job.data.test, job.spec.task, batch, amp,
                                       scale=scale), facts, "test"),
        "val": with_baseline(evaluate(job.parts, job.data.val, job.spec.task, batch, amp,
                                      scale=scale), facts, "val"),
        **test_resolutions(job),
    }
    write_json(run_dir / "eval.json", result)
    return result
