"""The pictures of an autoencoder: what they show, for every kind of data, and that drawing
them changes nothing in the training."""

import pytest
import torch

from dltrain.data.spec import Data, DataSpec, Split
from dltrain.log import NullLogger
from dltrain.models import build_model
from dltrain.probes.reconstruction import (
    ReconstructionPictures,
    grid_codes,
    image_grid,
    latent_picture,
    reconstruction_picture,
    samples_picture,
)
from dltrain.training.state import TrainState

PNG = b"\x89PNG\r\n\x1a\n"


class Images(NullLogger):
    def __init__(self) -> None:
        self.images: dict[str, object] = {}

    def log_image(self, tag, image, step):
        self.images[tag] = image


def test_image_grid_places_each_image_in_its_cell():
    images = torch.zeros(3, 1, 2, 2)
    images[1] = 1.0
    grid = image_grid(images, columns=2, pad=1, zoom=2)
    assert grid.shape == (2 * 5 + 1, 2 * 5 + 1, 3) and grid.dtype.name == "uint8"
    assert (grid[1:5, 1:5] == 0).all() and (grid[1:5, 6:10] == 255).all()  # black, then white
    assert (grid[0] == 128).all() and (grid[6:10, 6:10] == 128).all()  # padding, empty cell


def test_grid_codes_run_over_the_prior_quantiles_row_by_row_from_the_top():
    z = grid_codes(torch.randn(100, 2), 3, variational=True)
    q = 1.6448536  # the 95% quantile of N(0, 1)
    assert torch.allclose(z[0], torch.tensor([-q, q]), atol=1e-5)
    assert torch.allclose(z[2], torch.tensor([q, q]), atol=1e-5)
    assert torch.allclose(z[-1], torch.tensor([q, -q]), atol=1e-5)
    codes = torch.stack([torch.linspace(0, 10, 101), torch.linspace(-1, 1, 101)], 1)
    z = grid_codes(codes, 2, variational=False)  # the middle 90% of the codes
    assert torch.allclose(z[0], torch.tensor([0.5, 0.9])) and torch.allclose(
        z[3], torch.tensor([9.5, -0.9]))


@pytest.mark.parametrize(("kind", "shape"), [("vector", (1,)), ("vector", (2,)),
                                             ("vector", (5,)), ("signal", (2, 12))])
def test_other_data_is_drawn_as_plots(kind, shape):
    spec = DataSpec("d", "reconstruction", kind, shape)
    x = torch.randn(16, *shape)
    assert reconstruction_picture(x, x + 0.1, spec).startswith(PNG)
    assert samples_picture(x, x, spec).startswith(PNG)


@pytest.mark.parametrize("latent", [1, 2, 5])
@pytest.mark.parametrize("labels", ["classes", "targets", "none"])
def test_codes_are_drawn_in_any_width_with_any_labels(latent, labels):
    spec = DataSpec("d", "reconstruction", "vector", (2,), class_names=("a", "b", "c"))
    given = {"classes": torch.randint(0, 3, (50,)), "targets": torch.randn(50, 1),
             "none": None}[labels]
    assert latent_picture(torch.randn(50, latent), given, spec).startswith(PNG)


@pytest.mark.parametrize("variational", [False, True])
def test_drawing_changes_nothing_in_the_training(make_cfg, variational):
    spec = DataSpec("glyphs", "reconstruction", "image", (1, 28, 28), num_classes=10)
    cfg = make_cfg("model.latent=2", f"model.variational={variational}",
                   "model.batchnorm=true", "model.hidden=[32]")
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.init, spec)
    x = torch.rand(40, 1, 28, 28)
    data = Data(Split(x, x), Split(x, x), Split(x, x), spec, test_labels=torch.arange(40) % 10,
                norm={"mean": [0.2], "std": [0.3]})
    logger = Images()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    ReconstructionPictures(model, data, logger).validated(TrainState(step=7), {})
    assert torch.equal(torch.get_rng_state(), rng) and model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats too
    shown = {"probe/reconstructions", "probe/latent", "probe/latent_grid"}
    assert set(logger.images) == shown | ({"probe/prior_samples"} if variational else set())
    assert logger.images["probe/reconstructions"].shape == (4 * 58 + 2, 8 * 58 + 2, 3)
    assert logger.images["probe/latent_grid"].shape == (15 * 30 + 2,) * 2 + (3,)
    assert logger.images["probe/latent"].startswith(PNG)
    picture = logger.images["probe/reconstructions"]  # one channel: grey, R = G = B
    assert (picture[..., 0] == picture[..., 1]).all() and picture.std() > 0
