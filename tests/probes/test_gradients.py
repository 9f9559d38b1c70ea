"""The gradients probe: norms and update ratios against the gradients computed by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.data.spec import Data, DataSpec, Split
from dltrain.log import NullLogger
from dltrain.probes.context import ProbeContext
from dltrain.probes.gradients import Gradients, parameter_layers
from dltrain.run import run
from dltrain.training.checkpoint import load_checkpoint
from dltrain.training.state import TrainState
from tests.probes.helpers import events, probe_options, rebuilt, scalars_at

RUN = ["data=moons", "model.depth=2", "model.width=16", "optim=sgd", "optim.lr=0.1",
       "probe=[gradients,landscape]", "probe.every=3", "trainer=smoke", "trainer.max_steps=6"]


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    from hydra import compose, initialize_config_dir

    from dltrain.cli import conf_dir

    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=RUN)
    run_dir = tmp_path_factory.mktemp("gradients")
    assert run(cfg, run_dir).status == "completed"
    return cfg, run_dir


def test_the_gradient_at_initialisation_is_that_of_the_loss_on_the_probe_batch(probed):
    cfg, run_dir = probed
    init = load_checkpoint(run_dir / "checkpoints" / "init.pt")["params"]  # the landscape's
    data, model, loss = rebuilt(cfg)
    with torch.no_grad():
        for p, w in zip(model.parameters(), init, strict=True):
            p.copy_(w)
    x, y = data.train.x[:256], data.train.y[:256]
    loss(model(x), y).backward()
    logged = scalars_at(run_dir, 0, "probe/gradients/")
    for layer, params in parameter_layers(model).items():
        expected = torch.sqrt(sum((p.grad**2).sum() for p in params))
        assert logged[f"probe/gradients/{layer}/norm"] == pytest.approx(float(expected), rel=1e-4)
    assert not any(k.endswith("update_ratio") for k in logged)  # no step taken yet


class Recorder(NullLogger):
    def __init__(self) -> None:
        self.scalars: dict[int, dict[str, float]] = {}

    def log_metrics(self, metrics, step: int) -> None:
        self.scalars.setdefault(step, {}).update(metrics)


def test_under_sgd_the_update_ratio_is_lr_times_gradient_over_weight_norm(tmp_path):
    torch.manual_seed(0)
    data = Data(Split(torch.randn(8, 3), torch.randn(8, 1)), Split(torch.randn(8, 3),
                torch.randn(8, 1)), Split(torch.randn(4, 3), torch.randn(4, 1)),
                DataSpec("toy", "regression", "vector", (3,), num_outputs=1))
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1))
    logger = Recorder()
    ctx = ProbeContext(model, nn.MSELoss(), data, data.spec, {}, logger, tmp_path, every=2,
                       batch=8)
    probe = Gradients(ctx, **probe_options("gradients", histograms=False))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    state = TrainState()
    probe.start(state)
    for _ in range(4):
        before = {name: p.detach().clone() for name, p in model.named_parameters()}
        optimizer.zero_grad()
        nn.functional.mse_loss(model(data.train.x), data.train.y).backward()
        optimizer.step()
        state.step += 1
        probe.step(state)
    logged = logger.scalars
    assert sorted(logged) == [0, 2, 4]
    for layer in ("0", "2"):
        w = [before[f"{layer}.weight"], before[f"{layer}.bias"]]
        g = [model.get_submodule(layer).weight.grad, model.get_submodule(layer).bias.grad]
        norm_g = torch.sqrt(sum((t**2).sum() for t in g))
        norm_w = torch.sqrt(sum((t**2).sum() for t in w))
        assert logged[4][f"probe/gradients/{layer}/norm"] == pytest.approx(float(norm_g))
        assert logged[4][f"probe/gradients/{layer}/update_ratio"] == pytest.approx(
            float(0.1 * norm_g / norm_w), rel=1e-5)
    total = torch.sqrt(sum((p.grad**2).sum() for p in model.parameters()))
    assert logged[4]["probe/gradients/total_norm"] == pytest.approx(float(total))


def test_histograms_of_gradients_and_weights(probed):
    _, run_dir = probed
    acc = events(run_dir)
    assert [e.step for e in acc.Histograms("probe/gradients/head")] == [0, 3, 6]
    assert [e.step for e in acc.Histograms("probe/weights/hidden.0.linear")] == [0, 3, 6]
    assert acc.Histograms("probe/weights/hidden.0.linear")[0].histogram_value.num == 2 * 16 + 16
