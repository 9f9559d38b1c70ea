"""DeepONet (Lu et al., 2021): an operator as an inner product of two networks.

The branch net reads the input function at its sensors (every point of the training grid,
all channels, flattened) and gives `basis` coefficients per output channel; the trunk net reads
the coordinates of a query point and gives `basis` functions' values there. The output at a
point is Σ_k branch_k · trunk_k, plus a bias per channel.

The query points are the cell centres (i + 0.5) / n of the input's grid, so the output has
the input's resolution. An input at another resolution is read at the sensors by linear
interpolation (which, with `align_corners=False`, treats its points as cell centres too).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dltrain.data.spec import DataSpec
from dltrain.models.fno import cell_centres, operator_channels
from dltrain.models.layers import activation as make_activation
from dltrain.models.layers import dense_stack


class DeepONet(nn.Module):
    unstackable = "its trunk is evaluated on the input's grid"

    def __init__(self, spec: DataSpec, width: int = 128, depth: int = 3, basis: int = 64,
                 activation: str = "gelu") -> None:
        super().__init__()
        self.c_out = operator_channels("deeponet", spec, "model=mlp or model=cnn")
        self.sensors = tuple(spec.input_shape[1:])
        self.dims = len(self.sensors)
        self.basis = basis
        self.channel_axis = len(spec.target_shape) == len(spec.input_shape)
        branch, last = dense_stack(math.prod(spec.input_shape), [width] * depth, activation)
        self.branch = nn.Sequential(branch, nn.Linear(last, basis * self.c_out))
        trunk, last = dense_stack(self.dims, [width] * depth, activation)
        # the trunk's last layer is activated too (Lu et al.): basis functions, not a readout
        self.trunk = nn.Sequential(trunk, nn.Linear(last, basis), make_activation(activation))
        self.bias = nn.Parameter(torch.zeros(self.c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sizes = tuple(x.shape[2:])  # (B, C, *sizes)
        at_sensors = x
        if sizes != self.sensors:
            mode = "linear" if self.dims == 1 else "bilinear"
            at_sensors = F.interpolate(x, size=self.sensors, mode=mode, align_corners=False)
        coeffs = self.branch(at_sensors.flatten(1)).view(x.shape[0], self.c_out, self.basis)
        points = cell_centres(sizes, x.device, x.dtype).flatten(2)[0].T  # (points, dims)
        values = self.trunk(points)  # (points, basis)
        out = coeffs @ values.T + self.bias[:, None]  # (B, C_out, points)
        out = out.view(x.shape[0], self.c_out, *sizes)
        return out if self.channel_axis else out[:, 0]
