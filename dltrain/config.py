"""Validation of a composed config, before anything heavy happens.

Hydra already refuses unknown keys and unknown group options while composing (struct mode);
the command line turns those refusals into one sentence with the nearest valid name
(`suggest`). What composition cannot know — types, ranges, choices among strings — is checked
here by `validate(cfg)` from a table of rules. This module never imports torch: a typo must
be answered in well under a second.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from dltrain.errors import ConfigError

# String choices live here (not next to the torch code) so validation needs no torch;
# tests check that the torch-side tables cover exactly these names.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "identity")
PRECISIONS = ("32", "bf16", "16")
INITS = ("default", "lecun", "xavier", "kaiming", "orthogonal", "normal")
POOLINGS = ("max", "avg", "none")  # model=cnn: the pooling after each conv block
READOUTS = ("mean", "cls")  # model=transformer: the tokens' mean or a class token
NORMS = ("layer", "none")  # model=transformer
TASKS = ("classification", "regression", "language_model", "reconstruction")
# The probes, each with the options under which it looks only at the trained model, at a run's
# end, and never into training (None: it always looks into training). A vectorised stack runs
# such a probe for each of its members at the member's end; the others need a loop of their own.
PROBES: dict[str, dict[str, Any] | None] = {
    "activations": None,
    "gradients": None,
    "landscape": None,
    "boundary": None,
    "fit": {"images": False},
    "samples": None,
}
PROBE_COMMON = ("every", "batch")  # keys of `probe` that all probes share
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_URL = re.compile(r"^(https?|file)://\S+$")


def looks_into_training(name: str, options: Mapping[str, Any]) -> bool:
    """Whether probe `name` with `options` (its node under `probe`) looks during training, not
    only at the trained model (see PROBES)."""
    at_end = PROBES.get(name)
    return at_end is None or any(options.get(k) != v for k, v in at_end.items())


def written(value: Any) -> str:
    """A config value as an override writes it: null, true, 0.1, [16, 8]."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `name` (a typo's likely intent), or None if none is close."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


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


@dataclass(frozen=True)
class Rule:
    """A check of one key: `check(value)` returns what is wrong (a phrase) or None."""

    key: str
    check: Callable[[Any], str | None]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(lo: int, optional: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not _is_int(v) or v < lo:
            return f"must be a whole number >= {lo}" + (" or null" if optional else "")
        return None

    return check


def number(lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = True,
           optional: bool = False) -> Callable[[Any], str | None]:
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"
    interval = f"in {left}{lo:g}, {hi:g}{right}" if hi != math.inf else (
        f"> {lo:g}" if lo_open else f">= {lo:g}")

    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        ok = _is_number(v) and (v > lo if lo_open else v >= lo) and (
            v < hi if hi_open else v <= hi)
        return None if ok else f"must be a number {interval}" + (" or null" if optional else "")

    return check


def choice(options: Iterable[str], optional: bool = False) -> Callable[[Any], str | None]:
    options = tuple(options)

    def check(v: Any) -> str | None:
        if (v is None and optional) or (v is not None and str(v) in options):
            return None
        near = suggest(str(v), options)
        hint = f"; did you mean {near}?" if near else ""
        return f"must be {'null or ' if optional else ''}one of: {', '.join(options)}{hint}"

    return check


def batch_size(v: Any) -> str | None:
    if v == "full" or (_is_int(v) and v >= 1):
        return None
    return "must be a whole number >= 1, or full (the whole training split)"


def widths(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, (list, tuple, ListConfig)) and all(_is_int(w) and w >= 1 for w in v):
        return None
    return "must be null or a list of positive layer widths, e.g. [256,128]"


def channels(v: Any) -> str | None:
    if isinstance(v, (list, tuple, ListConfig)) and v and all(_is_int(c) and c >= 1 for c in v):
        return None
    return "must be a non-empty list of positive channel counts, e.g. [16,32]"


def device(v: Any) -> str | None:
    return None if _DEVICE.match(str(v)) else "must be auto, cpu, cuda, cuda:N or mps"


def auto_or_boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) or v == "auto" else "must be auto, true or false"


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def text(optional: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if isinstance(v, str) and v.strip():
            return None
        return "must be a path" + (" or null" if optional else "")

    return check


def url(v: Any) -> str | None:
    if v is None or (isinstance(v, str) and _URL.match(v)):
        return None
    return "must be null or a base URL (http://, https:// or file://)"


def flip(v: Any) -> str | None:
    return None if isinstance(v, bool) or v == "auto" else "must be auto, true or false"


def odd(lo: int) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if _is_int(v) and v >= lo and v % 2:
            return None
        return f"must be an odd whole number >= {lo} (so that the grid has a centre)"

    return check


def interval(v: Any) -> str | None:
    if (isinstance(v, (list, tuple, ListConfig)) and len(v) == 2 and all(map(_is_number, v))
            and v[0] < v[1]):
        return None
    return "must be a pair [low, high] of numbers with low < high"


def augmentation(v: Any) -> str | None:
    if v is None or isinstance(v, dict):
        return None
    return "must be null or set by reg=[augment] (then data.augment.crop=4 and the like)"


RULES: tuple[Rule, ...] = (
    Rule("task", choice(TASKS, optional=True)),
    Rule("data.batch_size", batch_size),
    Rule("data.n_train", integer(1, optional=True)),
    Rule("data.n_test", integer(1)),
    Rule("data.val_fraction", number(0, 1, lo_open=True)),
    Rule("data.test_fraction", number(0, 1, lo_open=True)),
    Rule("data.noise", number(0)),
    Rule("data.seed", integer(0)),
    Rule("data.root", text()),
    Rule("data.path", text(optional=True)),
    Rule("data.download", boolean),
    Rule("data.mirror", url),
    Rule("data.in_memory", boolean),
    Rule("data.workers", integer(0)),
    Rule("data.block_size", integer(1)),
    Rule("data.augment", augmentation),
    Rule("data.augment.crop", integer(0)),
    Rule("data.augment.flip", flip),
    Rule("data.augment.rotate", number(0, 180, hi_open=False)),
    Rule("data.augment.translate", number(0, 0.5, hi_open=False)),
    Rule("data.augment.noise", number(0)),
    Rule("model.hidden", widths),
    Rule("model.depth", integer(0)),
    Rule("model.width", integer(1)),
    Rule("model.activation", choice(ACTIVATIONS)),
    Rule("model.dropout", number(0, 1)),
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
    Rule("optim.lr", number(0, lo_open=True)),
    Rule("optim.weight_decay", number(0)),
    Rule("optim.momentum", number(0, 1)),
    Rule("optim.alpha", number(0, 1, hi_open=False)),
    Rule("optim.eps", number(0, lo_open=True)),
    Rule("optim.max_iter", integer(1)),
    Rule("optim.history_size", integer(1)),
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
    Rule("init.name", choice(INITS)),
    Rule("init.std", number(0, lo_open=True)),
    Rule("penalty.l1", number(0)),
    Rule("penalty.l2", number(0)),
    Rule("trainer.max_epochs", integer(1)),
    Rule("trainer.max_steps", integer(1, optional=True)),
    Rule("trainer.device", device),
    Rule("trainer.precision", choice(PRECISIONS)),
    Rule("trainer.compile", boolean),
    Rule("trainer.compile_min_steps", integer(0)),
    Rule("trainer.channels_last", auto_or_boolean),
    Rule("trainer.seed", integer(0)),
    Rule("trainer.deterministic", boolean),
    Rule("trainer.log_every", integer(1)),
    Rule("trainer.val_every", integer(1)),
    Rule("trainer.eval_batch_size", integer(1, optional=True)),
    Rule("trainer.threads", integer(1, optional=True)),
    Rule("trainer.accumulate", integer(1)),
    Rule("trainer.grad_clip.max_norm", number(0, lo_open=True, optional=True)),
    Rule("trainer.grad_clip.value", number(0, lo_open=True, optional=True)),
    Rule("trainer.early_stopping.patience", integer(1, optional=True)),
    Rule("trainer.early_stopping.min_delta", number(0)),
    Rule("trainer.nan_policy", choice(("stop", "skip"))),
    Rule("trainer.resume", choice(("never", "auto"))),
    Rule("trainer.strategy", choice(("single", "ddp"))),
    Rule("trainer.sync_batchnorm", auto_or_boolean),
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
    Rule("probe.landscape.seed", integer(0)),
    Rule("probe.boundary.images", boolean),
    Rule("probe.fit.images", boolean),
    Rule("probe.boundary.resolution", integer(2)),
    Rule("probe.boundary.points", integer(1)),
    Rule("probe.fit.points", integer(2)),
    Rule("probe.samples.length", integer(1)),
    Rule("probe.samples.prompt", integer(1)),
    Rule("probe.samples.temperature", number(0, lo_open=True)),
    Rule("probe.samples.seed", integer(0)),
)


def lookup(cfg: dict[str, Any], key: str, default: Any = None) -> Any:
    """The value of a dotted key of a config as plain containers, or `default`."""
    present, value = _value(cfg, key)
    return value if present else default


def _lbfgs(cfg: dict[str, Any]) -> str | None:
    if not str(lookup(cfg, "optim._target_", "")).endswith("LBFGS"):
        return None
    precision = lookup(cfg, "trainer.precision", "32")
    if str(precision) != "32":
        return (f"optim=lbfgs cannot run with trainer.precision={precision}: its line "
                "search needs full-precision losses; use trainer.precision=32")
    accumulate = lookup(cfg, "trainer.accumulate", 1)
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
COMBINATIONS: tuple[Callable[[dict[str, Any]], str | None], ...] = (
    _lbfgs, _one_clip, _nesterov, _probes)


def _value(cfg: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(present, value) of a dotted key of a config as plain containers."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def validate(cfg: DictConfig, rules: Iterable[Rule] = RULES) -> None:
    """Raise ConfigError with one sentence for the first key that breaks its rule, or for an
    impossible combination of keys."""
    try:  # resolved once; the rules read plain values (reading DictConfig nodes is slow)
        plain = OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:  # an interpolation that points nowhere, named by OmegaConf
        raise ConfigError(f"The config cannot be resolved: {err}".splitlines()[0]) from None
    assert isinstance(plain, dict)
    for rule in rules:
        present, value = _value(plain, rule.key)
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
