"""Which data a model family can take, and the one sentence that refuses the rest."""

from __future__ import annotations

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError


def data_phrase(spec: DataSpec) -> str:
    """What a sample of the data looks like, in words: "28x28 images", "2-D points"."""
    shape = spec.input_shape
    if spec.kind == "image":
        c, h, w = shape
        return f"{h}x{w} images" + (f" of {c} channels" if c != 1 else "")
    if spec.kind == "signal":
        c, length = shape
        return f"signals of {length} steps" + (f" and {c} channels" if c != 1 else "")
    if spec.kind == "tokens":
        return "token sequences"
    n = shape[0]
    return f"{n}-D points" if n <= 3 else f"vectors of {n} features"


def refusal(model: str, spec: DataSpec, needs: str, instead: str) -> ConfigError:
    """The error for a model that cannot read the data: what it needs and what would work."""
    return ConfigError(f"model={model} needs {needs}, but data={spec.name} gives "
                       f"{data_phrase(spec)}; use {instead}.")
