"""Validation of a composed config, before anything heavy happens.

Hydra already refuses unknown keys and unknown group options while composing (struct mode);
the command line turns those refusals into one sentence with the nearest valid name
(`suggest`). What composition cannot know — types, ranges, choices among strings — is checked
here by `validate(cfg)` from a table of rules. This module never imports torch: a typo must
be answered in well under a second.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from omegaconf import DictConfig, OmegaConf

from dltrain.choices import (
    ACTIVATIONS,
    CELLS,
    INITS,
    LOGGERS,
    MONITORS,
    NORMS,
    POOLINGS,
    PRECISIONS,
    PROBE_COMMON,
    PROBES,
    READOUTS,
    TASKS,
    chosen_loggers,
)
from dltrain.errors import ConfigError
from dltrain.generation.rules import GENERATION_RULES, generation_combination
from dltrain.operator_rules import OPERATOR_RULES
from dltrain.pinn.rules import PDE_RULES, pinn_combination
from dltrain.rules import (
    PER_DRAW,
    PER_MEMBER,
    SHARED,
    Rule,
    alone_unless,
    augmentation,
    auto_or_boolean,
    batch_size,
    boolean,
    boolean_or_null,
    channels,
    choice,
    column_names,
    device,
    experiment_name,
    image_channels,
    image_size,
    integer,
    interval,
    number,
    numbers,
    odd,
    off,
    pair,
    path_or_pair,
    run_name,
    seed,
    suggest,
    text,
    url,
    widths,
    written,
)

# The checks are in dltrain.rules; `Rule`, `suggest` and `written` are also reached through
# this module (`from dltrain.config import written`), where the rest of dltrain looks for them.

def dotted_keys(cfg: Any, prefix: str = "") -> list[str]:
    """Every key of a nested config as a dotted path (`optim.lr`), interior nodes included."""
    keys: list[str] = []
    if isinstance(cfg, DictConfig):
        for key in cfg:
            path = f"{prefix}{key}"
            keys.append(path)
            node = cfg._get_node(key)
            if isinstance(node, DictConfig):
                keys.extend(dotted_keys(node, path + "."))
    return keys


RULES: tuple[Rule, ...] = (
    Rule("name", run_name),
    Rule("task", choice(TASKS, optional=True), alone=alone_unless(
        lambda v: v not in ("reconstruction", "generation"), "task={value}: "
        "autoencoders, VAEs and generative models are not stacked")),
    Rule("data.batch_size", batch_size),
    Rule("data.n_train", integer(1, optional=True)),
    Rule("data.n_test", integer(1)),
    Rule("data.val_fraction", number(0, 1, lo_open=True)),
    Rule("data.test_fraction", number(0, 1, lo_open=True)),
    Rule("data.noise", number(0), PER_DRAW),
    Rule("data.seed", seed, PER_DRAW),
    Rule("data.root", text()),
    Rule("data.path", text(optional=True)),
    # data=table: the user's own table (dltrain/data/table.py)
    Rule("data.target", column_names(single=True)),
    Rule("data.features", column_names(single=False)),
    Rule("data.task", choice(("auto", "classification", "regression"))),
    Rule("data.missing", choice(("error", "drop"))),
    Rule("data.val_path", path_or_pair),  # a pair [X.npy, Y.npy] for data=arrays
    Rule("data.test_path", path_or_pair),
    # data=arrays: .npz / .npy / HDF5 (dltrain/data/arrays.py)
    Rule("data.x", text()),  # a key of an .npz, a dataset path of an HDF5 file
    Rule("data.y", text()),
    Rule("data.y_path", text(optional=True)),  # the targets' .npy beside data.path=X.npy
    Rule("data.kind", choice(("auto", "vector", "signal", "image"))),
    # data=series: windows of a time series (dltrain/data/series.py)
    Rule("data.columns", column_names(single=True)),
    Rule("data.window", integer(1)),
    Rule("data.horizon", integer(1)),
    # data=images: a folder of class folders (dltrain/data/images.py)
    Rule("data.size", image_size),
    Rule("data.channels", image_channels),
    Rule("data.download", boolean),
    Rule("data.mirror", url),
    Rule("data.in_memory", boolean, alone=alone_unless(
        lambda v: v is not False, "data.in_memory=false: streamed batches run alone")),
    Rule("data.workers", integer(0)),
    Rule("data.block_size", integer(1)),
    Rule("data.factor", number(0, 1)),  # data=circles: inner radius / outer radius
    Rule("data.classes", integer(2)),  # data=spirals, blobs
    Rule("data.turns", number(0)),  # data=spirals
    Rule("data.periods", number(0, lo_open=True)),  # data=sine
    Rule("data.coefficients", numbers),  # data=poly
    Rule("data.x_range", interval),  # data=poly
    Rule("data.length", integer(2)),  # data=adding: steps of a sequence; sine_series: of the series
    Rule("data.frequencies", numbers),  # data=sine_series: cycles per step of each component
    Rule("data.augment", augmentation, alone=alone_unless(
        off, "data augmentation (reg=[augment]) draws per batch: it runs alone")),
    Rule("data.augment.crop", integer(0)),
    Rule("data.augment.flip", auto_or_boolean),
    Rule("data.augment.rotate", number(0, 180, hi_open=False)),
    Rule("data.augment.translate", number(0, 0.5, hi_open=False)),
    Rule("data.augment.noise", number(0)),
    Rule("model.hidden", widths),
    Rule("model.depth", integer(0)),
    Rule("model.width", integer(1)),
    Rule("model.activation", choice(ACTIVATIONS)),
    Rule("model.dropout", number(0, 1), PER_MEMBER),
    Rule("model.batchnorm", boolean),
    Rule("model.channels", channels),
    Rule("model.kernel_size", integer(1)),
    Rule("model.stride", integer(1)),
    Rule("model.padding", integer(0, optional=True)),
    Rule("model.pooling", choice(POOLINGS)),
    Rule("model.pool_size", integer(1)),
    Rule("model.blocks", integer(1)),
    Rule("model.stem_pool", boolean),
    Rule("model.heads", integer(1)),
    Rule("model.mlp_ratio", number(0, lo_open=True)),
    Rule("model.patch_size", integer(1, optional=True)),
    Rule("model.readout", choice(READOUTS)),
    Rule("model.norm", choice(NORMS)),
    Rule("model.latent", integer(1, optional=True)),
    Rule("model.variational", boolean),
    # model=rnn (dltrain/models/rnn.py)
    Rule("model.cell", choice(CELLS)),
    Rule("model.hidden_size", integer(1)),
    Rule("model.layers", integer(1)),
    Rule("model.bidirectional", boolean),
    *OPERATOR_RULES,  # neural operators: data=darcy|burgers_operator, model=fno|deeponet
    Rule("optim.lr", number(0, lo_open=True), PER_MEMBER),
    Rule("optim.weight_decay", number(0), PER_MEMBER),
    Rule("optim.momentum", number(0, 1), PER_MEMBER),
    Rule("optim.alpha", number(0, 1, hi_open=False)),
    Rule("optim.max_iter", integer(1)),
    Rule("optim.history_size", integer(1)),
    Rule("optim.betas", pair(0, 1), PER_MEMBER),
    Rule("optim.eps", number(0, lo_open=True), PER_MEMBER),
    Rule("optim.nesterov", boolean),
    Rule("optim.line_search_fn", choice(("strong_wolfe",), optional=True)),
    Rule("optim.fused", boolean_or_null),  # null: torch's choice (see conf/optim/adam.yaml)
    Rule("optim.foreach", boolean_or_null),
    Rule("loss.label_smoothing", number(0, 1)),
    Rule("loss.delta", number(0, lo_open=True)),
    Rule("loss.beta", number(0)),
    Rule("sched.step_size", integer(1, optional=True)),
    Rule("sched.gamma", number(0, 1, lo_open=True, hi_open=False, optional=True)),
    Rule("sched.warmup_steps", integer(0, optional=True)),
    Rule("sched.min_fraction", number(0, 1, hi_open=False)),
    Rule("sched.pct_start", number(0, 1, lo_open=True)),
    Rule("sched.factor", number(0, 1, lo_open=True)),
    Rule("sched.patience", integer(0)),
    Rule("sched.eta_min", number(0)),
    Rule("sched.div_factor", number(0, lo_open=True)),
    Rule("sched.final_div_factor", number(0, lo_open=True)),
    Rule("sched.anneal_strategy", choice(("cos", "linear"))),
    Rule("sched.cycle_momentum", boolean),
    Rule("sched.mode", choice(("min", "max"))),
    Rule("sched.threshold", number(0)),
    Rule("init.name", choice(INITS)),
    Rule("init.std", number(0, lo_open=True), PER_MEMBER),
    Rule("penalty.l1", number(0), PER_MEMBER),
    Rule("penalty.l2", number(0), PER_MEMBER),
    Rule("trainer.max_epochs", integer(1), SHARED),
    Rule("trainer.max_steps", integer(1, optional=True), SHARED),
    Rule("trainer.device", device, SHARED),
    Rule("trainer.precision", choice(PRECISIONS), SHARED, alone_unless(
        lambda v: str(v) == "32", "trainer.precision={value}: mixed precision runs alone")),
    Rule("trainer.compile", boolean, SHARED, alone_unless(
        lambda v: not v, "trainer.compile=true: a compiled model runs alone")),
    Rule("trainer.compile_min_steps", integer(0), SHARED),
    Rule("trainer.channels_last", auto_or_boolean, SHARED, alone_unless(
        lambda v: v is not True, "trainer.channels_last=true: the channels-last layout runs "
        "alone")),
    Rule("trainer.seed", seed, PER_MEMBER),
    Rule("trainer.deterministic", boolean, SHARED),
    Rule("trainer.log_every", integer(1), SHARED),
    Rule("trainer.val_every", integer(1), SHARED),
    Rule("trainer.eval_batch_size", integer(1, optional=True), SHARED),
    Rule("trainer.threads", integer(1, optional=True), SHARED),
    Rule("trainer.accumulate", integer(1), SHARED, alone_unless(
        lambda v: v == 1, "trainer.accumulate: gradient accumulation runs alone")),
    Rule("trainer.monitor", choice(MONITORS), SHARED),
    Rule("trainer.grad_clip.max_norm", number(0, lo_open=True, optional=True), SHARED),
    Rule("trainer.grad_clip.value", number(0, lo_open=True, optional=True), SHARED),
    Rule("trainer.early_stopping.patience", integer(1, optional=True), SHARED),
    Rule("trainer.early_stopping.min_delta", number(0), SHARED),
    Rule("trainer.nan_policy", choice(("stop", "skip")), SHARED, alone_unless(
        lambda v: v == "stop", "trainer.nan_policy={value} looks at every step's loss, so it "
        "runs alone")),
    Rule("trainer.resume", choice(("never", "auto")), SHARED, alone_unless(
        lambda v: v == "never", "trainer.resume={value}: a run that may continue a checkpoint "
        "runs alone")),
    Rule("trainer.strategy", choice(("single", "ddp")), SHARED, alone_unless(
        lambda v: v == "single", "trainer.strategy={value}: data-parallel runs are not "
        "stacked")),
    Rule("trainer.sync_batchnorm", auto_or_boolean, SHARED),  # (no stack is data-parallel)
    Rule("probe.every", integer(1)),
    Rule("probe.batch", integer(1)),
    *(Rule(f"probe.{name}.every", integer(1, optional=True))
      for name in ("activations", "gradients", "boundary", "fit")),
    Rule("probe.activations.histograms", boolean),
    Rule("probe.activations.histogram_values", integer(1)),
    Rule("probe.gradients.histograms", boolean),
    Rule("probe.gradients.histogram_values", integer(1)),
    Rule("probe.landscape.resolution", odd(3)),
    Rule("probe.landscape.span", number(0, lo_open=True)),
    Rule("probe.landscape.points", integer(2)),
    Rule("probe.landscape.line", interval),
    Rule("probe.landscape.seed", seed),
    Rule("probe.boundary.images", boolean),
    Rule("probe.fit.images", boolean),
    Rule("probe.boundary.resolution", integer(2)),
    Rule("probe.boundary.points", integer(1)),
    Rule("probe.fit.points", integer(2)),
    Rule("probe.samples.length", integer(1)),
    Rule("probe.samples.prompt", integer(1)),
    Rule("probe.samples.temperature", number(0, lo_open=True)),
    Rule("probe.samples.seed", seed),
    Rule("logger.tensorboard.flush_secs", number(0)),
    Rule("logger.mlflow.experiment", experiment_name),
    Rule("logger.mlflow.flush_secs", number(0)),
    *PDE_RULES,  # task=pinn: pde=..., optim=adam_lbfgs
    *GENERATION_RULES,  # task=generation: model=gan|diffusion, loss=wgan_gp, trainer.d_steps/fid_*
)


def lookup(cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    """The value of a dotted key of a config as plain containers, or `default`."""
    present, value = find(cfg, key)
    return value if present else default


def _lbfgs(cfg: dict[str, Any]) -> str | None:
    if not str(lookup(cfg, "optim._target_")).endswith("LBFGS"):
        return None
    precision = lookup(cfg, "trainer.precision")
    if str(precision) != "32":
        return (f"optim=lbfgs cannot run with trainer.precision={precision}: its line "
                "search needs full-precision losses; use trainer.precision=32")
    accumulate = lookup(cfg, "trainer.accumulate")
    if accumulate != 1:
        return ("optim=lbfgs cannot accumulate gradients (trainer.accumulate="
                f"{accumulate}): every L-BFGS step re-evaluates the loss on its "
                "batch; use a larger data.batch_size instead")
    if lookup(cfg, "trainer.grad_clip.max_norm") or lookup(cfg, "trainer.grad_clip.value"):
        return ("optim=lbfgs cannot clip gradients: its line search sets the step length; "
                "drop reg=[grad_clip]")
    return None


def _one_clip(cfg: dict[str, Any]) -> str | None:
    if lookup(cfg, "trainer.grad_clip.max_norm") and lookup(cfg, "trainer.grad_clip.value"):
        return ("trainer.grad_clip takes max_norm or value, not both; set the other to null")
    return None


def _nesterov(cfg: dict[str, Any]) -> str | None:
    if lookup(cfg, "optim.nesterov") and not lookup(cfg, "optim.momentum"):
        return "optim.nesterov=true needs optim.momentum > 0"
    return None


def _probes(cfg: dict[str, Any]) -> str | None:
    """An unknown name under `probe` (added with +probe.NAME=...)."""
    group = lookup(cfg, "probe") or {}
    for name in group:
        if name not in PROBE_COMMON and name not in PROBES:
            near = suggest(str(name), PROBES)
            hint = f"; did you mean {near}?" if near else f" (probes: {', '.join(PROBES)})"
            return f"probe.{name} is not a probe{hint}"
    return None


# Checks that involve several keys: each returns what is wrong (a sentence) or None.
def _loggers(cfg: dict[str, Any]) -> str | None:
    """An unknown logger or logger key (+logger.NAME.KEY=...: a list of options is not checked
    against its files), and MLflow asked for but not installed."""
    chosen = chosen_loggers(cfg)
    for name, keys in chosen.items():
        if name not in LOGGERS:
            near = suggest(name, LOGGERS)
            hint = f"; did you mean {near}?" if near else f" (loggers: {', '.join(LOGGERS)})"
            return f"logger.{name} is not a logger{hint}"
        known = [r.key.rpartition(".")[2] for r in RULES if r.key.startswith(f"logger.{name}.")]
        for key in keys:
            if key not in known:
                near = suggest(str(key), known)
                hint = f"; did you mean logger.{name}.{near}?" if near else \
                    f" (it has: {', '.join(known) or 'no keys'})"
                return f"logger.{name}.{key} is not a key of logger {name}{hint}"
    if "mlflow" in chosen and importlib.util.find_spec("mlflow") is None:
        return ("logger=[mlflow] needs MLflow, which is not installed: "
                "pip install 'dltrain[mlflow]'")
    return None


COMBINATIONS: tuple[Callable[[dict[str, Any]], str | None], ...] = (
    _lbfgs, _one_clip, _nesterov, _probes, _loggers, pinn_combination,
    generation_combination)


def plain(node: Mapping[str, Any]) -> dict[str, Any]:
    """A config (or a node of it) as plain, resolved containers: what builders are given.
    A plain mapping is copied (shallowly)."""
    params = (OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node)
              else dict(node))
    assert isinstance(params, dict)
    return params


def find(cfg: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key of a config as plain containers."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


# Groups whose node is handed to its `_target_`: a user's own class there (`own_code`) takes
# the node's keys, which dltrain's rules know nothing of, so they are not checked.
BUILT_BY_TARGET = ("model", "loss", "optim", "sched")


def own_code(node: Any) -> bool:
    """Whether a node's `_target_` is the user's own code, not dltrain's or torch's."""
    target = node.get("_target_") if isinstance(node, Mapping) else None
    return isinstance(target, str) and not target.startswith(("dltrain.", "torch."))


def validate(cfg: DictConfig, rules: Iterable[Rule] = RULES) -> None:
    """Raise ConfigError with one sentence for the first key that breaks its rule, or for an
    impossible combination of keys."""
    try:  # resolved once; the rules read plain values (reading DictConfig nodes is slow)
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation that points nowhere, named by OmegaConf
        raise ConfigError(f"The config cannot be resolved: {err}".splitlines()[0]) from None
    assert isinstance(plain, dict)
    own = {group for group in BUILT_BY_TARGET if own_code(plain.get(group))}
    for rule in rules:
        if rule.key.partition(".")[0] in own:
            continue
        present, value = find(plain, rule.key)
        if not present:
            continue
        problem = rule.check(value)
        if problem:
            sentence = f"{rule.key}={written(value)} {problem}"
            raise ConfigError(sentence if sentence.endswith("?") else sentence + ".")
    for combination in COMBINATIONS:
        problem = combination(plain)
        if problem:
            raise ConfigError(problem if problem.endswith("?") else problem + ".")
