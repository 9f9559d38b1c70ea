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


def field_channels(model: str, spec: DataSpec) -> int | None:
    """The channels of a field target the size of the input, for a conv model; None where
    the target is a class or a vector of outputs (the model's dense head gives it).

    A field is a target of the input's spatial size: (C_out, H, W) for (C_in, H, W) images,
    (C_out, L) for (C_in, L) signals, or (H, W) (one channel, no channel axis). Any other
    target of several axes is one a convolution does not map to: refused.
    """
    shape, spatial = tuple(spec.target_shape), tuple(spec.input_shape[1:])
    if spec.task != "regression" or not shape:
        return None
    if shape[1:] == spatial:
        return shape[0]
    if shape == spatial:
        return 1
    size = "x".join(map(str, spatial))
    raise ConfigError(f"model={model} maps {data_phrase(spec)} to fields of the same "
                      f"{size} size, but data={spec.name} has targets of shape "
                      f"{'x'.join(map(str, shape))}; use model=mlp, which reshapes its output "
                      "to any target shape.")
