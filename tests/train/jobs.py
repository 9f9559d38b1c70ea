"""A Job around hand-made parts, for tests that drive fit() on tiny problems."""

from __future__ import annotations

import torch

from dltrain.data.batches import Batches
from dltrain.data.spec import Data, DataSpec, Split
from dltrain.training.state import Job, Parts, Settings


def loop_job(parts: Parts, batches: Batches, val: Split, task: str, settings: Settings,
             device: torch.device | str = "cpu") -> Job:
    """What fit() reads of a job: its parts, settings, batches, validation split and task."""
    spec = DataSpec("test", task, "vector", tuple(val.x.shape[1:]))
    data = Data(train=val, val=val, test=val, spec=spec)
    return Job(data, spec, parts, settings, batches, 0, torch.device(device))
