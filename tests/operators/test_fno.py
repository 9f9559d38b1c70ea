"""model=fno and model=deeponet: the spectral convolution against a direct DFT, the same
function at another resolution, the shapes the DataSpec asks for, and what they refuse."""

from __future__ import annotations

import math

import pytest
import torch

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.cnn import CNN
from dltrain.models.deeponet import DeepONet
from dltrain.models.fno import FNO, SpectralConv


def field_spec(*sizes: int, channels: int = 1, out: int = 1) -> DataSpec:
    kind = "image" if len(sizes) == 2 else "signal"
    return DataSpec("fields", "regression", kind, (channels, *sizes),
                    num_outputs=out * math.prod(sizes), target_shape=(out, *sizes))


def direct_dft(conv: SpectralConv, x: torch.Tensor) -> torch.Tensor:
    """The spectral convolution written out as sums over complex exponentials (float64):
    y(x_j) = (1/N) Σ_k e^{2πi k·j/N} W_k X_k over the kept frequencies k and their mirror
    images, X_k = Σ_j e^{−2πi k·j/N} x(x_j)."""
    w = torch.view_as_complex(conv.weight.detach().double().contiguous())
    m = conv.modes
    x = x.double()
    if conv.dims == 1:
        n = x.shape[-1]
        j = torch.arange(n, dtype=torch.float64)
        out = torch.zeros(x.shape[0], conv.c_out, n, dtype=torch.float64)
        for k in range(m):
            basis = torch.exp(-2j * math.pi * k * j / n)
            coef = torch.einsum("bij,j,io->bo", x.cdouble(), basis, w[0, k])
            # a real signal's frequency k > 0 stands for k and −k: 2 Re(...)
            term = coef[:, :, None] * torch.conj(basis)[None, None, :]
            out += (term.real if k == 0 else 2 * term.real) / n
        return out
    h, wd = x.shape[-2:]
    jy, jx = torch.meshgrid(torch.arange(h, dtype=torch.float64),
                            torch.arange(wd, dtype=torch.float64), indexing="ij")
    out = torch.zeros(x.shape[0], conv.c_out, h, wd, dtype=torch.float64)
    for corner, rows in ((0, range(m)), (1, range(-m, 0))):
        for a, ky in enumerate(rows):
            for kx in range(m):
                basis = torch.exp(-2j * math.pi * (ky * jy / h + kx * jx / wd))
                coef = torch.einsum("bihw,hw,io->bo", x.cdouble(), basis, w[corner, a, kx])
                term = coef[:, :, None, None] * torch.conj(basis)[None, None]
                out += (term.real if kx == 0 else 2 * term.real) / (h * wd)
    return out


def test_spectral_conv_1d_is_the_direct_dft():
    torch.manual_seed(0)
    conv = SpectralConv(3, 2, modes=4, dims=1)
    x = torch.randn(2, 3, 12)
    assert torch.allclose(conv(x).double(), direct_dft(conv, x), atol=1e-5)


def test_spectral_conv_2d_is_the_direct_dft():
    torch.manual_seed(1)
    conv = SpectralConv(2, 3, modes=3, dims=2)
    x = torch.randn(2, 2, 8, 10)
    expected = direct_dft(conv, x)
    assert torch.allclose(conv(x).double(), expected, atol=1e-5)
    # and it is not the identity or zero: the weights do something
    assert expected.abs().max() > 1e-3


def band_limited(coeffs: torch.Tensor, n: int) -> torch.Tensor:
    """Σ a_k cos(2πk x) + b_k sin(2πk x) at the cell centres of an n x n grid, k < 4 in each
    axis: a function with one value at a point, whatever the grid."""
    c = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    k = torch.arange(coeffs.shape[-1] // 2, dtype=torch.float64)
    cos, sin = torch.cos(2 * math.pi * k[:, None] * c), torch.sin(2 * math.pi * k[:, None] * c)
    basis = torch.cat([cos, sin])  # (2K, n)
    return torch.einsum("bpq,pi,qj->bij", coeffs, basis, basis).float().unsqueeze(1)


def test_spectral_conv_gives_the_same_function_on_a_finer_grid():
    torch.manual_seed(2)
    conv = SpectralConv(1, 1, modes=5, dims=2)
    coeffs = torch.randn(3, 8, 8, dtype=torch.float64)
    coarse, fine = conv(band_limited(coeffs, 16)), conv(band_limited(coeffs, 48))
    # the centre of coarse cell i is the centre of fine cell 3i + 1 (48 = 3 x 16)
    assert torch.allclose(fine[..., 1::3, 1::3], coarse, atol=1e-5)
    assert coarse.abs().max() > 1e-3


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_fno_output_at_a_higher_resolution_is_the_same_function():
    torch.manual_seed(3)
    spec = field_spec(16, 16)
    fno = FNO(spec, width=8, modes=6, layers=3)
    cnn = CNN(spec, channels=[8, 8, 8], kernel_size=3, stride=1, padding=None, pooling="none",
              pool_size=2, hidden=[], activation="gelu", dropout=0.0, batchnorm=False)
    coeffs = torch.randn(4, 8, 8, dtype=torch.float64) / (1 + torch.arange(8.0)) ** 2
    coarse, fine = band_limited(coeffs, 16), band_limited(coeffs, 32)

    def at_coarse_points(y: torch.Tensor) -> torch.Tensor:
        # a coarse cell centre is the corner of four fine cells: their mean, to O(h²)
        return torch.nn.functional.avg_pool2d(y, 2)

    with torch.no_grad():
        fno_gap = rel(at_coarse_points(fno(fine)), fno(coarse))
        # (the CNN's convolutions and 1x1 head, without the reshape to the training size)
        conv = lambda x: cnn.head(cnn.features(x))  # noqa: E731
        cnn_gap = rel(at_coarse_points(conv(fine)), conv(coarse))
    # the operator computes the same function on the finer grid; a CNN, whose kernels cover
    # half the distance there, computes another
    assert fno_gap < 0.005, fno_gap
    assert cnn_gap > 20 * fno_gap, (cnn_gap, fno_gap)


@pytest.mark.parametrize("sizes", [(32,), (16, 16)])
def test_fno_takes_any_resolution_and_channels(sizes):
    spec = field_spec(*sizes, channels=2, out=3)
    fno = FNO(spec, width=8, modes=4, layers=2)
    for scale in (1, 2):
        shape = tuple(s * scale for s in sizes)
        out = fno(torch.randn(5, 2, *shape))
        assert tuple(out.shape) == (5, 3, *shape)
    # a grid too coarse for all the modes uses those it has
    assert fno(torch.randn(2, 2, *[6] * len(sizes))).shape[2:] == (6,) * len(sizes)
    out.square().mean().backward()
    assert all(p.grad is not None for p in fno.parameters())


def test_fno_refuses_modes_above_nyquist_and_non_fields():
    with pytest.raises(ConfigError, match=r"model.modes=9 is above the Nyquist limit .*16x16 "
                       r"grid \(8 modes per dimension\); use model.modes=8"):
        FNO(field_spec(16, 16), modes=9)
    table = DataSpec("table", "regression", "vector", (4,), num_outputs=1)
    with pytest.raises(ConfigError) as err:
        FNO(table)
    assert str(err.value).startswith("model=fno needs a field-to-field map")
    assert "data=table gives vectors of 4 features" in str(err.value)
    labels = DataSpec("glyphs", "classification", "image", (1, 28, 28), num_classes=10)
    with pytest.raises(ConfigError, match="data=glyphs gives 28x28 images with class labels"):
        DeepONet(labels)


def test_deeponet_is_an_inner_product_of_branch_and_trunk():
    torch.manual_seed(4)
    spec = field_spec(20)
    net = DeepONet(spec, width=16, depth=2, basis=5)
    x = torch.randn(3, 1, 20)
    out = net(x)
    coeffs = net.branch(x.flatten(1))  # (3, 5)
    points = ((torch.arange(20) + 0.5) / 20)[:, None]
    expected = coeffs @ net.trunk(points).T + net.bias
    assert torch.allclose(out[:, 0], expected, atol=1e-6)
    # another resolution: read at the sensors by interpolation, answered on its own grid
    assert net(torch.randn(3, 1, 40)).shape == (3, 1, 40)
