import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from dltrain.cli import conf_dir
from dltrain.data import SOURCES, Generated, synthetic

GENERATED = [name for name, source in SOURCES.items() if isinstance(source, Generated)]


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def draw(name: str, n: int, noise: float, generator: torch.Generator):
    """A draw of data set `name` with the shape parameters of its conf/data/ option."""
    source = SOURCES[name]
    option = OmegaConf.load(Path(conf_dir()) / "data" / f"{name}.yaml")
    return source.make(n, noise, generator, **{k: option[k] for k in source.params})


@pytest.mark.parametrize("name", ["moons", "circles", "spirals", "blobs"])
def test_2d_classification_sets_are_balanced_points(name):
    x, y = draw(name, 600, 0.1, gen())
    assert x.shape == (600, 2) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    counts = torch.bincount(y)
    assert counts.max() - counts.min() <= 1  # classes equally often


@pytest.mark.parametrize("name", GENERATED)
def test_same_seed_same_data_other_seed_other_data(name):
    a, b, c = draw(name, 64, 0.1, gen(1)), draw(name, 64, 0.1, gen(1)), draw(name, 64, 0.1, gen(2))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_moons_without_noise_lie_on_their_half_circles():
    x, y = synthetic.moons(400, 0.0, gen())
    upper, lower = x[y == 0], x[y == 1]
    assert torch.allclose(upper.norm(dim=1), torch.ones(len(upper)), atol=1e-5)
    assert (upper[:, 1] >= -1e-6).all()
    centred = lower - torch.tensor([1.0, 0.5])
    assert torch.allclose(centred.norm(dim=1), torch.ones(len(lower)), atol=1e-5)


def test_circles_radii():
    x, y = synthetic.circles(400, 0.0, gen(), factor=0.3)
    r = x.norm(dim=1)
    assert torch.allclose(r[y == 0], torch.tensor(1.0), atol=1e-5)
    assert torch.allclose(r[y == 1], torch.tensor(0.3), atol=1e-5)


def test_sine_noise_has_the_requested_std():
    x, y = synthetic.sine(20000, 0.3, gen(), periods=2)
    assert x.abs().max() <= 2 * math.pi
    residual = y - torch.sin(x)
    assert abs(residual.std().item() - 0.3) < 0.01


def test_poly_follows_its_coefficients():
    x, y = synthetic.poly(100, 0.0, gen(), coefficients=(1.0, 0.0, -2.0), x_range=(-2, 3))
    assert x.min() >= -2 and x.max() <= 3
    assert torch.allclose(y, 1.0 - 2.0 * x**2, atol=1e-5)
