"""Checks of single config values, the words they answer with, and the way a value is written.

`config.RULES` pairs every key with one of these; each check returns what is wrong (a phrase
that follows "KEY=VALUE") or None. Like config.py, this module never imports torch.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from omegaconf import ListConfig

Check = Callable[[Any], str | None]

_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
_URL = re.compile(r"^(https?|file)://\S+$")
# The keys of `data.augment` as reg=[augment] sets them (conf/reg/augment.yaml); the data
# builders read every one of them.
AUGMENT_KEYS = frozenset({"crop", "flip", "rotate", "translate", "noise"})


@dataclass(frozen=True)
class Rule:
    """A check of one key: `check(value)` returns what is wrong (a phrase) or None.

    The key also declares how a vectorised stack of runs treats it (dltrain/vectorised/plan.py
    reads these, and lists no key of its own): `stack` is SHARED (the members share one
    value), PER_MEMBER (each member may have its own) or PER_DRAW (its own where the data are
    drawn, not read); a trainer key that declares nothing must be off for its run to stack.
    `alone(value)` says why a value makes a run train alone, or None.
    """

    key: str
    check: Check
    stack: str | None = None
    alone: Callable[[Any], str | None] | None = None


SHARED = "shared"
PER_MEMBER = "per_member"
PER_DRAW = "per_draw"


def alone_unless(ok: Callable[[Any], bool], why: str) -> Callable[[Any], str | None]:
    """A Rule's `alone`: the sentence `why` (`{value}` is the value as written) unless
    `ok(value)`."""
    return lambda v: None if ok(v) else why.format(value=written(v))


def off(value: Any) -> bool:
    """null, false, 0, [] and {}: a setting that asks for nothing."""
    return value is None or value is False or value == 0 or value == [] or value == {}


def written(value: Any) -> str:
    """A config value as an override writes it: null, true, 0.1, [16, 8]."""
    if value is None:
        return "null"
    return str(value).lower() if isinstance(value, bool) else str(value)


def suggest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate closest to `name` (a typo's likely intent), or None if none is close."""
    found = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _is_list(v: Any) -> bool:
    return isinstance(v, (list, tuple, ListConfig))


def integer(lo: int, optional: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if v is None and optional:
            return None
        if not _is_int(v) or v < lo:
            return f"must be a whole number >= {lo}" + (" or null" if optional else "")
        return None

    return check


# The largest seed: numpy's global seed and the generators a run derives take 32 bits, so a
# larger one is refused by the config rather than by numpy halfway into a run.
SEED_MAX = 2**32 - 1


def seed(v: Any) -> str | None:
    """trainer.seed, data.seed and the probes' seeds: a whole number of 32 bits."""
    if _is_int(v) and 0 <= v <= SEED_MAX:
        return None
    return f"must be a whole number >= 0 and <= {SEED_MAX} (2**32 - 1: a seed has 32 bits)"


def _interval(lo: float, hi: float, lo_open: bool, hi_open: bool) -> str:
    """An interval as a message writes it: "in [0, 1)", "> 0", ">= 0"."""
    if hi == math.inf:
        return f"> {lo:g}" if lo_open else f">= {lo:g}"
    return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def _within(v: Any, lo: float, hi: float, lo_open: bool, hi_open: bool) -> bool:
    return _is_number(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)


def number(lo: float, hi: float = math.inf, lo_open: bool = False, hi_open: bool = True,
           optional: bool = False) -> Check:
    interval = _interval(lo, hi, lo_open, hi_open)

    def check(v: Any) -> str | None:
        if (v is None and optional) or _within(v, lo, hi, lo_open, hi_open):
            return None
        return f"must be a number {interval}" + (" or null" if optional else "")

    return check


def choice(options: Iterable[str], optional: bool = False) -> Check:
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
    if _is_list(v) and all(_is_int(w) and w >= 1 for w in v):
        return None
    return "must be null or a list of positive layer widths, e.g. [256,128]"


def channels(v: Any) -> str | None:
    if _is_list(v) and v and all(_is_int(c) and c >= 1 for c in v):
        return None
    return "must be a non-empty list of positive channel counts, e.g. [16,32]"


def numbers(v: Any) -> str | None:
    if _is_list(v) and v and all(map(_is_number, v)):
        return None
    return "must be a non-empty list of numbers, e.g. [0.0,-1.0,0.0,2.0]"


def pair(lo: float, hi: float, hi_open: bool = True) -> Check:
    """Two numbers, each in [lo, hi) (or [lo, hi]): Adam's betas."""
    interval = _interval(lo, hi, False, hi_open)

    def check(v: Any) -> str | None:
        if _is_list(v) and len(v) == 2 and all(_within(b, lo, hi, False, hi_open) for b in v):
            return None
        return f"must be a pair of numbers {interval}, e.g. [0.9,0.999]"

    return check


def device(v: Any) -> str | None:
    return None if _DEVICE.match(str(v)) else "must be auto, cpu, cuda, cuda:N or mps"


def auto_or_boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) or v == "auto" else "must be auto, true or false"


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def boolean_or_null(v: Any) -> str | None:
    return None if v is None or isinstance(v, bool) else "must be null, true or false"


def text(optional: bool = False) -> Check:
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


def odd(lo: int) -> Check:
    def check(v: Any) -> str | None:
        if _is_int(v) and v >= lo and v % 2:
            return None
        return f"must be an odd whole number >= {lo} (so that the grid has a centre)"

    return check


def interval(v: Any) -> str | None:
    if _is_list(v) and len(v) == 2 and all(map(_is_number, v)) and v[0] < v[1]:
        return None
    return "must be a pair [low, high] of numbers with low < high"


def augmentation(v: Any) -> str | None:
    # Every key of the preset, or none: the data builders read them all (see AUGMENT_KEYS).
    if v is None or (isinstance(v, dict) and set(v) == AUGMENT_KEYS):
        return None
    return "must be null or set by reg=[augment] (then data.augment.crop=4 and the like)"


def column_names(single: bool) -> Check:
    """Null, a list of column names, or (where `single`) one name: data.target, data.features."""

    def check(v: Any) -> str | None:
        if v is None or (single and isinstance(v, str | int) and str(v).strip()):
            return None
        if _is_list(v) and v and all(isinstance(c, str | int) and str(c).strip() for c in v):
            return None
        return ("must be null, a column name or a list of them, e.g. [a,b]" if single
                else "must be null or a list of column names, e.g. [a,b]")

    return check


def image_size(v: Any) -> str | None:
    """data=images: the size every image is resized to."""
    if v is None or (_is_int(v) and v >= 1):
        return None
    if _is_list(v) and len(v) == 2 and all(_is_int(s) and s >= 1 for s in v):
        return None
    return "must be null (the most common size), a whole number (square) or [height, width]"


def image_channels(v: Any) -> str | None:
    """data=images: grey (1) or RGB (3), or null to decide from the files."""
    if v is None or (_is_int(v) and v in (1, 3)):
        return None
    return "must be null (decided from the files), 1 (grey) or 3 (RGB)"


def path_or_pair(v: Any) -> str | None:
    """Null, a file, or a pair [X_FILE, Y_FILE] (data=arrays: two .npy files)."""
    if v is None or (isinstance(v, str) and v.strip()):
        return None
    if _is_list(v) and len(v) == 2 and all(isinstance(p, str) and p.strip() for p in v):
        return None
    return "must be null, a path, or a pair of paths [X.npy,Y.npy]"


def experiment_name(v: Any) -> str | None:
    """logger.mlflow.experiment: an MLflow experiment's name, or null."""
    if v is None or (isinstance(v, str) and v.strip()):
        return None
    return "must be null or the name of an MLflow experiment"


NAME_LIMIT = 80  # characters of a run's name (`name=`): it goes into directory names
_RUN_NAME = re.compile(r"^[^\W_][\w.+=@-]*$")  # letters (any script), digits and . _ - + = @


def run_name(v: Any) -> str | None:
    """`name`: a run's name goes into its directory's name, so it must be one safe file name."""
    if v is None or (isinstance(v, int) and not isinstance(v, bool)):
        return None
    if isinstance(v, str) and _RUN_NAME.match(v) and len(v) <= NAME_LIMIT:
        return None
    return (f"must be null or a name of at most {NAME_LIMIT} letters, digits and . _ - + = @ "
            "that starts with a letter or digit (it becomes part of a directory's name: no '/', "
            "spaces, quotes or the like)")
