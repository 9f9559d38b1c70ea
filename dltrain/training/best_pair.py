"""best.pt against last.pt: the weights a run calls its best are the ones that are scored.

A run writes last.pt, then best.pt when the monitored metric improved (Checkpoints.write).
A process that dies between the two writes (SIGKILL, a second Ctrl-C, a full device) leaves
a best.pt older than the best step that last.pt records: scored as it is, a resume's test
or `dltrain eval` would report an old step's metrics under the new step's name. Every
reader of the pair (a resume, `dltrain eval`, a run's test, predict and export) asks
`settle_best` first:

- best.pt's step is last.pt's best step: it is used;
- last.pt is itself the best step (the death between the writes): best.pt is rewritten from
  last.pt's weights, atomically, with a warning (where it cannot be written, last.pt is
  used);
- otherwise no file holds the best step's weights: refused in one sentence, unless best.pt
  is gone, when the last weights are scored with a warning that says so.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from dltrain.errors import ConfigError
from dltrain.training.checkpoint import RESUMABLE, load_checkpoint, peek_state, save_checkpoint

log = logging.getLogger("dltrain")

# what last.pt holds beyond best.pt's entries (Checkpoints.compose): left out of a best.pt
# rewritten from it
RESUME_ONLY = ("optimizer", "scheduler", "scaler", "rng", "rng_ranks")


def settle_best(folder: Path, last: dict[str, Any] | None = None) -> Path | None:
    """The checkpoint of `folder` (a run's checkpoints/) that holds the run's best weights:
    best.pt once it agrees with last.pt (rewritten from it where it did not), last.pt where
    it is the best or no best.pt is left; None when `folder` holds neither. `last`: last.pt's
    content where the caller has read it already (a resume). Raises ConfigError where the
    best step's weights are in no file."""
    folder = Path(folder)
    best_path, last_path = folder / "best.pt", folder / "last.pt"
    if last is None and not last_path.exists():
        return best_path if best_path.exists() else None  # nothing to check it against
    state = dict(last["state"]) if last is not None else peek_state(last_path)
    wanted, step = state.get("best_step"), state["step"]
    if not best_path.exists():
        if wanted is not None and wanted == step:
            return _rewrite(folder, last, None)
        if wanted is not None:
            log.warning(f"{best_path} is missing: the last weights (step {step}) are used, not "
                        f"those of the run's best step {wanted}.")
        return last_path
    held = peek_state(best_path)["step"]
    if wanted is None or held == wanted:
        return best_path
    if wanted == step:
        return _rewrite(folder, last, held)
    raise ConfigError(f"{best_path} holds the weights of step {held}, but the run's best step "
                      f"is {wanted} (last.pt, step {step}) and no file holds that step's "
                      f"weights; delete best.pt to use the last weights instead.")


def _rewrite(folder: Path, last: dict[str, Any] | None, held: int | None) -> Path:
    """best.pt from last.pt's weights (last.pt is the best step); last.pt where it cannot
    be written (a read-only run directory, a full device): it holds the same weights."""
    best_path, last_path = folder / "best.pt", folder / "last.pt"
    payload = last if last is not None else load_checkpoint(last_path, RESUMABLE)
    step = payload["state"]["step"]
    was = "is missing" if held is None else f"held step {held}"
    try:
        save_checkpoint(best_path, {k: v for k, v in payload.items() if k not in RESUME_ONLY})
    except OSError as err:  # NoSpaceError among them
        log.warning(f"{best_path} {was}, not the run's best step {step} (the run stopped "
                    f"between writing last.pt and best.pt); it could not be rewritten ({err}), "
                    f"so last.pt, which holds that step's weights, is used.")
        return last_path
    log.warning(f"{best_path} {was}, not the run's best step {step} (the run stopped between "
                f"writing last.pt and best.pt); rewrote it from last.pt, which holds that "
                f"step's weights.")
    return best_path
