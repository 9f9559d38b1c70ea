"""The Fourier neural operator (Li et al., 2021): a map from a field to a field that is defined
on functions, not on one grid, so it can be evaluated at any resolution.

Each Fourier layer adds two paths: a spectral convolution (`SpectralConv`: FFT, a learned
complex matrix on each of the lowest `modes` frequencies per dimension, inverse FFT) and a
pointwise linear map (a 1x1 convolution), followed by the activation. A lifting layer takes the
input's channels and its grid coordinates to `width` channels; a projection (two 1x1
convolutions) takes them to the target's channels. 1-D for signals (C, L), 2-D for images
(C, H, W): the DataSpec says which.

Grid coordinates are those of cell centres, (i + 0.5) / n along each axis of n points, the
convention of the operator data sets (dltrain/data/operators/): a point keeps its coordinate
at every resolution.
"""

from __future__ import annotations

import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.compat import data_phrase, field_channels
from dltrain.models.layers import activation as make_activation

FIELD_NEEDS = ("a field-to-field map: (C, L) signals or (C, H, W) images with a target of the "
               "same size (data=darcy, data=burgers_operator, or data=arrays of fields)")


def operator_channels(model: str, spec: DataSpec, instead: str) -> int:
    """The target's channels of a field-to-field spec; one sentence refusing any other data."""
    field = None
    if spec.kind in ("signal", "image"):
        field = field_channels(model, spec)
    if field is None:
        raise ConfigError(f"model={model} needs {FIELD_NEEDS}, but data={spec.name} gives "
                          f"{data_phrase(spec)} with {_target_phrase(spec)}; use {instead}.")
    return field


def _target_phrase(spec: DataSpec) -> str:
    if spec.task == "classification":
        return "class labels"
    if spec.task == "regression":
        n = spec.out_features
        return f"{n} regression output{'s' if n != 1 else ''} a sample"
    return f"a {spec.task} task"


def check_modes(modes: int, spec: DataSpec) -> None:
    """Refuse more modes than the training grid holds: a grid of n points has frequencies up
    to n // 2 (Nyquist) along each axis."""
    sizes = spec.input_shape[1:]
    limit = min(sizes) // 2
    if modes > limit:
        grid = "x".join(map(str, sizes))
        raise ConfigError(f"model.modes={modes} is above the Nyquist limit of data={spec.name}'s "
                          f"{grid} grid ({limit} modes per dimension); use model.modes={limit} "
                          "or less, or a finer data.resolution.")


def cell_centres(sizes: tuple[int, ...], device: torch.device, dtype: torch.dtype
                 ) -> torch.Tensor:
    """(1, len(sizes), *sizes): the coordinates (i + 0.5) / n of every point, one channel
    an axis."""
    axes = [(torch.arange(n, device=device, dtype=dtype) + 0.5) / n for n in sizes]
    return torch.stack(torch.meshgrid(*axes, indexing="ij")).unsqueeze(0)


class SpectralConv(nn.Module):
    """y = IFFT(W · FFT(x)) on the lowest `modes` frequencies of each axis (the rest zero).

    `torch.fft.rfftn` keeps the non-negative half of the last axis (0 .. modes-1); the other
    axes keep 0 .. modes-1 and their negatives -modes .. -1: for 2-D, two corner blocks of
    the spectrum, each with its own weights. The weights are stored as real pairs (…, 2),
    one complex (c_in, c_out) matrix for every kept frequency. A grid too coarse for all
    `modes` uses the ones it has.
    """

    def __init__(self, c_in: int, c_out: int, modes: int, dims: int) -> None:
        super().__init__()
        if dims not in (1, 2):
            raise ValueError(f"SpectralConv: dims={dims}, not 1 or 2")
        self.c_in, self.c_out, self.modes, self.dims = c_in, c_out, modes, dims
        corners = 2 ** (dims - 1)
        # Li et al.'s scale: uniform in [0, 1/(c_in c_out)), real and imaginary parts
        scale = 1.0 / (c_in * c_out)
        self.weight = nn.Parameter(
            scale * torch.rand(corners, *([modes] * dims), c_in, c_out, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = tuple(x.shape[2:])
        spatial = tuple(range(-self.dims, 0))
        x_ft = torch.fft.rfftn(x.float(), dim=spatial)  # (B, C_in, ..., n_last // 2 + 1)
        m_last = min(self.modes, sizes[-1] // 2 + 1)
        weight = self.weight  # (corners, m.., C_in, C_out, 2): real and imaginary parts
        if self.dims == 1:
            block = x_ft[:, :, :m_last]  # (B, C_in, m)
            w = weight[0, :m_last]  # (m, C_in, C_out, 2)
        else:
            m_first = min(self.modes, sizes[0] // 2)
            block = torch.cat([x_ft[:, :, :m_first, :m_last],
                               x_ft[:, :, sizes[0] - m_first:, :m_last]], dim=2)
            w = torch.cat([weight[0, :m_first, :m_last], weight[1, :m_first, :m_last]])
        kept = block.shape[2:]
        # one (B, C_in) @ (C_in, C_out) complex product per frequency, as one real batched
        # matmul: [re, im] @ [[W_re, W_im], [-W_im, W_re]] (torch's complex bmm takes a slow,
        # per-matrix path on the CPU in the backward pass)
        xs = block.flatten(2).permute(2, 0, 1)  # (M, B, C_in) complex
        xs = torch.cat([xs.real, xs.imag], dim=-1)  # (M, B, 2 C_in)
        w = w.reshape(-1, self.c_in, self.c_out, 2)
        w_re, w_im = w[..., 0], w[..., 1]
        blocks = torch.cat([torch.cat([w_re, w_im], -1), torch.cat([-w_im, w_re], -1)], 1)
        ys = torch.bmm(xs, blocks)  # (M, B, 2 C_out)
        ys = torch.complex(ys[..., :self.c_out], ys[..., self.c_out:])
        ys = ys.permute(1, 2, 0).reshape(x.shape[0], self.c_out, *kept)
        out_ft = x_ft.new_zeros(x.shape[0], self.c_out, *x_ft.shape[2:])
        if self.dims == 1:
            out_ft[:, :, :m_last] = ys
        else:
            out_ft[:, :, :m_first, :m_last] = ys[:, :, :m_first]
            out_ft[:, :, sizes[0] - m_first:, :m_last] = ys[:, :, m_first:]
        return torch.fft.irfftn(out_ft, s=sizes, dim=spatial).to(x.dtype)


def pointwise(dims: int, c_in: int, c_out: int) -> nn.Module:
    """A linear map of the channels at every point: a 1x1 convolution."""
    return (nn.Conv1d if dims == 1 else nn.Conv2d)(c_in, c_out, 1)


class FourierLayer(nn.Module):
    """act(SpectralConv(x) + W x): the global and the pointwise path, added."""

    def __init__(self, width: int, modes: int, dims: int, act: str | None) -> None:
        super().__init__()
        self.spectral = SpectralConv(width, width, modes, dims)
        self.linear = pointwise(dims, width, width)
        self.act = make_activation(act) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.spectral(x) + self.linear(x))


class FNO(nn.Module):
    """Lifting (channels + coordinates -> width), `layers` Fourier layers, projection
    (width -> 2 width -> the target's channels). The output has the input's resolution,
    whatever it is: (B, C_out, *sizes), or (B, *sizes) for a target without a channel axis.
    """

    unstackable = "its spectral weights are complex matrices per frequency"

    def __init__(self, spec: DataSpec, width: int = 32, modes: int = 12, layers: int = 4,
                 activation: str = "gelu") -> None:
        super().__init__()
        c_out = operator_channels("fno", spec, "model=mlp or model=cnn")
        check_modes(modes, spec)
        self.dims = len(spec.input_shape) - 1
        self.channel_axis = len(spec.target_shape) == len(spec.input_shape)
        c_in = spec.input_shape[0]
        self.lift = pointwise(self.dims, c_in + self.dims, width)
        # the last layer has no activation: the projection's own follows (Li et al.)
        self.layers = nn.Sequential(*(
            FourierLayer(width, modes, self.dims, activation if i < layers - 1 else None)
            for i in range(layers)))
        self.project = nn.Sequential(pointwise(self.dims, width, 2 * width),
                                     make_activation(activation),
                                     pointwise(self.dims, 2 * width, c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = tuple(x.shape[2:])  # (B, C, *sizes)
        grid = cell_centres(sizes, x.device, x.dtype).expand(x.shape[0], -1, *sizes)
        h = self.lift(torch.cat([x, grid], dim=1))  # (B, width, *sizes)
        out = self.project(self.layers(h))  # (B, C_out, *sizes)
        return out if self.channel_axis else out[:, 0]

