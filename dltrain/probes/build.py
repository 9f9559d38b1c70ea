"""The probes a config turns on, checked against the data and built into one `Hooks` object.

The config stops here: each probe class gets its own options and the data's config node as
plain dicts, read by key (the defaults live in conf/probe/ and conf/data/ only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from dltrain.choices import PROBE_COMMON, chosen_loggers
from dltrain.config import suggest
from dltrain.data.spec import Data, DataSpec
from dltrain.errors import ConfigError
from dltrain.log import Logger
from dltrain.probes import boundary, field, fit, samples
from dltrain.probes.activations import Activations
from dltrain.probes.context import ProbeContext
from dltrain.probes.gradients import Gradients
from dltrain.probes.landscape import Landscape
from dltrain.training.hooks import NO_HOOKS, HookList, Hooks
from dltrain.training.state import Parts

# name -> (the probe's class, why it cannot look at some data: None if it can look at any)
TABLE: dict[str, tuple[Callable[..., Hooks], Callable[[DataSpec], str | None] | None]] = {
    "activations": (Activations, None),
    "gradients": (Gradients, None),
    "landscape": (Landscape, None),
    "boundary": (boundary.Boundary, boundary.refusal),
    "fit": (fit.Fit, fit.refusal),
    "samples": (samples.Samples, samples.refusal),
    "field": (field.field_probe, field.refusal),
}


class ProbedJob(Protocol):
    """What the probes read of a run's job (dltrain.run's Job, or any object with these): a
    protocol, so that the probes depend on no module that builds jobs."""

    @property
    def data(self) -> Data: ...

    @property
    def spec(self) -> DataSpec: ...  # the model's view of the data

    @property
    def parts(self) -> Parts: ...  # .model and .loss


def chosen(config: Mapping[str, Any]) -> list[str]:
    """The probes a config turns on: the options that put their keys under `probe`."""
    return [str(k) for k in config["probe"] if k not in PROBE_COMMON]


def check_probes(config: Mapping[str, Any], spec: DataSpec) -> list[str]:
    """The chosen probes' names; ConfigError if one is unknown or cannot look at this data."""
    names = chosen(config)
    for name in names:
        if name not in TABLE:
            near = suggest(name, TABLE)
            hint = f"; did you mean {near}?" if near else f" (probes: {', '.join(TABLE)})."
            raise ConfigError(f"probe.{name} is not a probe{hint}")
        why_not = TABLE[name][1]
        problem = why_not(spec) if why_not else None
        if problem:
            raise ConfigError(problem + ".")
    return names


def build_probes(config: Mapping[str, Any], job: ProbedJob, logger: Logger, run_dir: Path,
                 main: bool = True) -> Hooks:
    """The hooks of the probes the run's `config` (plain, resolved) turns on, for
    `fit(..., hooks=...)`, and the pictures a reconstruction task draws.

    Every rank checks the choice (a refusal ends all ranks alike, before training); only the
    main rank (`main`) gets probes.
    """
    names = check_probes(config, job.spec)
    if not main:
        return NO_HOOKS
    hooks: list[Hooks] = []
    if job.spec.task == "reconstruction" and "tensorboard" in chosen_loggers(config):
        # An autoencoder's pictures (reconstructions, its latent space) come with the task,
        # where a logger shows pictures (TensorBoard's; MLflow's sink takes numbers only).
        from dltrain.probes.reconstruction import ReconstructionPictures  # lazy: matplotlib

        hooks.append(ReconstructionPictures(job.parts.model, job.data, logger))
    if job.spec.task == "generation":  # samples from fixed noise: TensorBoard and samples.png
        from dltrain.generation.pictures import SamplePictures  # lazy: matplotlib for vectors

        hooks.append(SamplePictures(job.parts.model, job.data, logger, Path(run_dir)))
    if names:
        ctx = ProbeContext(model=job.parts.model, loss=job.parts.loss, data=job.data,
                           spec=job.spec, data_cfg=dict(config["data"]), logger=logger,
                           run_dir=Path(run_dir), every=int(config["probe"]["every"]),
                           batch=int(config["probe"]["batch"]))
        # (a probe without options of its own, e.g. landscape's, has a null node)
        hooks += [TABLE[name][0](ctx, **(config["probe"][name] or {})) for name in names]
    return HookList(hooks) if hooks else NO_HOOKS
