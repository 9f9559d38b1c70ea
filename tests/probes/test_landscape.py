"""The landscape probe: the numbers behind the picture, and weights left as they were."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dltrain.data.spec import Data, DataSpec, Split
from dltrain.log import NullLogger
from dltrain.probes.context import ProbeContext
from dltrain.probes.landscape import Landscape, filter_normalised_direction
from dltrain.run import run
from dltrain.training.checkpoint import load_checkpoint
from tests.probes.helpers import events, last_weights, probe_options, rebuilt

RUN = ["data=moons", "model.depth=2", "model.width=16", "probe=[landscape]",
       "probe.landscape.resolution=5", "probe.landscape.points=5", "probe.landscape.line=[0,1]",
       "trainer=smoke"]


@pytest.fixture(scope="module")
def landscape(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from dltrain.cli import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=RUN)
    run_dir = tmp_path_factory.mktemp("landscape")
    assert run(cfg, run_dir).status == "completed"
    return cfg, run_dir, dict(np.load(run_dir / "landscape.npz"))


def loss_of(cfg, weights) -> float:
    data, model, loss = rebuilt(cfg, weights)
    with torch.no_grad():
        return float(loss(model(data.train.x[:256]), data.train.y[:256]))


def test_the_centre_of_the_surface_and_the_end_of_the_line_are_the_final_loss(landscape):
    cfg, run_dir, result = landscape
    final = loss_of(cfg, last_weights(run_dir))
    surface, axis = result["surface"], result["axis"]
    assert surface.shape == (5, 5) and axis[2] == 0.0
    assert surface[2, 2] == pytest.approx(final, rel=1e-6)
    assert float(result["final_loss"]) == pytest.approx(final, rel=1e-6)
    assert result["alphas"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert result["line"][-1] == pytest.approx(final, rel=1e-6)
    assert np.isfinite(surface).all()
    # trained weights sit lower than random ones: the centre is not above the mean of the grid
    assert surface[2, 2] <= surface.mean()


def test_the_line_starts_at_the_initial_loss(landscape):
    cfg, run_dir, result = landscape
    init = load_checkpoint(run_dir / "checkpoints" / "init.pt")["params"]
    _, model, _ = rebuilt(cfg)
    weights = dict(zip([n for n, _ in model.named_parameters()], init, strict=True))
    assert result["line"][0] == pytest.approx(loss_of(cfg, weights), rel=1e-6)
    assert result["line"][0] > result["line"][-1]  # training lowered the loss


def test_landscape_png_and_the_tensorboard_image(landscape):
    _, run_dir, _ = landscape
    assert (run_dir / "landscape.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    images = events(run_dir).Images("probe/landscape")
    assert len(images) == 1 and images[0].step == 20
    assert images[0].encoded_image_string == (run_dir / "landscape.png").read_bytes()
    assert images[0].width > images[0].height > 0


def test_directions_are_filter_normalised_and_skip_biases():
    layer = nn.Linear(4, 3)
    gen = torch.Generator().manual_seed(1)
    w_dir, b_dir = filter_normalised_direction([layer.weight, layer.bias], gen)
    assert torch.allclose(w_dir.norm(dim=1), layer.weight.detach().norm(dim=1))
    assert torch.equal(b_dir, torch.zeros(3))


def test_measuring_puts_every_weight_back_bit_for_bit(tmp_path):
    torch.manual_seed(0)
    split = Split(torch.randn(16, 2), torch.randint(0, 2, (16,)))
    data = Data(split, split, split, DataSpec("toy", "classification", "vector", (2,),
                                              num_classes=2))
    model = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 2))
    ctx = ProbeContext(model, nn.CrossEntropyLoss(), data, data.spec, {}, NullLogger(),
                       tmp_path, every=10, batch=16)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rng = torch.get_rng_state()
    result = Landscape(ctx, **probe_options("landscape", resolution=3, points=3)).measure()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(torch.get_rng_state(), rng)  # the training's random numbers untouched
    assert np.isnan(result["line"]).all()  # no initial weights were saved: no line
