"""The task a run learns when it is not the data set's own: `task=reconstruction`.

A data set comes with its own task (its labels, its regression targets, its next tokens).
Reconstruction replaces the targets by the inputs, so any image, vector or signal data set
trains an autoencoder; the test labels are kept aside for pictures of the learnt codes.
Generation (`task=generation`) keeps the inputs and their class labels: the model learns to
sample inputs, the labels condition it and train the feature network that scores it.
"""

from __future__ import annotations

from dataclasses import replace

from dltrain.data.spec import Data, HostSplit, Split
from dltrain.errors import ConfigError


def with_task(data: Data, task: str | None) -> Data:
    """`data` as `task` asks: unchanged for null or the data's own task; inputs as targets
    for reconstruction. Any other task does not fit the data and is refused."""
    spec = data.spec
    if task is None or task == spec.task:
        return data
    if task == "generation":
        return as_generation(data)
    if task != "reconstruction":
        raise ConfigError(f"task={task} does not fit data={spec.name}, a {spec.task} data set; "
                          "leave task=null (the data's own task) or use task=reconstruction.")
    if spec.kind == "tokens":
        raise ConfigError(f"task=reconstruction needs images, vectors or signals, but "
                          f"data={spec.name} gives token sequences; leave task=null to train "
                          "a language model on it.")

    def inputs_as_targets(split: Split) -> Split:
        return Split(split.x, split.x)  # the same tensor twice: no copy

    # A split streamed from the host keeps its labels as y; its batches take x as the target
    # (dltrain.data.batches.train_batches).
    train = data.train if isinstance(data.train, HostSplit) else inputs_as_targets(data.train)
    return replace(data, train=train, val=inputs_as_targets(data.val),
                   test=inputs_as_targets(data.test), test_labels=data.test.y,
                   spec=replace(spec, task="reconstruction", num_outputs=None))


def as_generation(data: Data) -> Data:
    """task=generation: the inputs are what is learnt (to sample from), the class labels stay
    as the targets (a conditional model's classes; the fid's feature network learns them).
    Labelled images, vectors or signals held in memory, else refused."""
    spec = data.spec
    if spec.task != "classification" or spec.kind == "tokens":
        raise ConfigError(f"task=generation needs labelled images, vectors or signals (a "
                          f"classification data set: its classes train the feature network "
                          f"that scores the samples), but data={spec.name} is a {spec.task} "
                          "data set; use e.g. data=glyphs, mnist or moons.")
    if isinstance(data.train, HostSplit):
        raise ConfigError("task=generation needs its training split in memory (the feature "
                          "network that scores the samples trains on it); set "
                          "data.in_memory=true.")
    return replace(data, spec=replace(spec, task="generation"))
