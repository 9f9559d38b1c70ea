"""TensorBoard event files in RUN_DIR/tb: scalars, and the HParams record of the run."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dltrain.log import NullLogger


def _hparam_value(value: Any) -> Any:
    """HParams takes numbers, strings and booleans; anything else is shown as text."""
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


class TensorBoardLogger(NullLogger):
    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter  # lazy: tensorboard is heavy

        # purge_step: a resumed run discards what an earlier attempt logged after its
        # checkpoint, so the curves continue without a doubled stretch.
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step, flush_secs=10)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for tag, value in metrics.items():
            self.writer.add_scalar(tag, value, step)

    def log_hparams(self, hparams: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
        """Write the HParams records into this run's own event file (not a sub-run)."""
        from torch.utils.tensorboard.summary import hparams as hparams_summaries

        values = {k: _hparam_value(v) for k, v in hparams.items()}
        # The metrics named here are tags this run also logs as scalars (test/..., val/...):
        # the HParams tab reads their values from them.
        for summary in hparams_summaries(values, dict(metrics)):
            self.writer.file_writer.add_summary(summary)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
