"""The activations probe: the lecture's signal-propagation numbers, read from the logged scalars."""

from __future__ import annotations

import itertools

import pytest
import torch

from dltrain.probes.activations import dead_fraction, layer_outputs, watched_layers
from dltrain.run import run
from tests.probes.helpers import events, scalars_at

DEEP_LINEAR = ["data=blobs", "model.depth=5", "model.width=100", "model.activation=identity",
               "probe=[activations]", "trainer.max_steps=1", "logger=none"]


def stds_at_init(make_cfg, tmp_path, *overrides: str) -> list[float]:
    result = run(make_cfg(*DEEP_LINEAR, *overrides), tmp_path)
    assert result.status == "completed"
    stats = scalars_at(tmp_path, 0, "probe/activations/")
    return [stats[f"probe/activations/hidden.{i}.act/std"] for i in range(5)]


def test_lecun_keeps_the_std_of_a_deep_linear_net_constant(make_cfg, tmp_path):
    stds = stds_at_init(make_cfg, tmp_path, "init=lecun")
    for shallow, deep in itertools.pairwise(stds):
        assert deep / shallow == pytest.approx(1.0, abs=0.2)
    assert stds[-1] / stds[0] == pytest.approx(1.0, abs=0.3)


def test_a_fixed_std_of_0_05_halves_the_std_at_each_layer_of_100_units(make_cfg, tmp_path):
    # Var(out) = 100 * 0.05^2 * Var(in): a factor sqrt(0.25) = 0.5 on the std per layer
    stds = stds_at_init(make_cfg, tmp_path, "init=normal", "init.std=0.05")
    ratios = [deep / shallow for shallow, deep in itertools.pairwise(stds)]
    assert ratios == pytest.approx([0.5] * 4, abs=0.08)
    assert stds[-1] / stds[0] == pytest.approx(0.5**4, rel=0.3)


def test_dead_units_are_those_off_for_every_sample():
    out = torch.tensor([[0.0, 1.0, 0.0, 0.0],
                        [0.0, 0.0, 2.0, 0.0],
                        [0.0, 3.0, 0.0, 0.0]])
    assert float(dead_fraction(out)) == pytest.approx(0.5)  # units 0 and 3
    conv = torch.zeros(2, 3, 2, 2)
    conv[1, 0] = 1.0  # channel 0 is alive at all four positions, the rest are dead
    assert float(dead_fraction(conv)) == pytest.approx(8 / 12)


def test_the_probe_watches_each_activation_and_the_output_in_forward_order():
    from dltrain.data.spec import DataSpec
    from dltrain.models.mlp import MLP

    spec = DataSpec("toy", "classification", "vector", (3,), num_classes=2)
    model = MLP(spec, hidden=[4, 5], depth=2, width=4, activation="relu", dropout=0.0,
                batchnorm=False)
    layers = watched_layers(model)
    assert [name for name, _ in layers] == ["hidden.0.act", "hidden.1.act", "head"]
    x = torch.randn(7, 3)
    outputs = layer_outputs(model, x, layers)
    assert list(outputs) == ["hidden.0.act", "hidden.1.act", "head"]
    assert torch.equal(outputs["head"], model(x).detach())
    assert outputs["hidden.1.act"].shape == (7, 5)


def test_scalars_and_histograms_every_probe_step_and_dead_relus(make_cfg, tmp_path):
    cfg = make_cfg("data=moons", "model.depth=2", "model.width=32", "probe=[activations]",
                   "probe.every=5", "trainer=smoke", "trainer.max_steps=10")
    assert run(cfg, tmp_path).status == "completed"
    acc = events(tmp_path)
    tags = acc.Tags()
    assert "probe/activations/hidden.0.act" in tags["histograms"]
    assert [e.step for e in acc.Scalars("probe/activations/hidden.1.act/std")] == [0, 5, 10]
    assert [e.step for e in acc.Histograms("probe/activations/head")] == [0, 5, 10]
    dead = acc.Scalars("probe/activations/hidden.0.act/dead")
    assert all(0.0 <= e.value < 1.0 for e in dead)
    assert "probe/activations/head/dead" not in tags["scalars"]  # the output is no ReLU
    # the histogram holds the layer's values: as many as the probe batch has, per unit
    histogram = acc.Histograms("probe/activations/hidden.0.act")[0].histogram_value
    assert histogram.num == 200 * 32  # moons' validation split: 200 points < probe.batch
    assert histogram.min >= 0.0  # after a ReLU


@pytest.mark.parametrize(("model", "kind", "shape", "expected"), [
    ("mlp", "vector", (2,), ["hidden.0.act", "hidden.1.act", "head"]),
    ("cnn", "image", (1, 8, 8), ["features.0.act", "features.1.act", "head"]),
    ("resnet", "vector", (2,), ["stem.act", "stages.0.0.branch.act1", "stages.0.0.act",
                                "stages.0.1.act", "head"]),
    ("transformer", "tokens", (6,), ["blocks.0.mlp.act", "blocks.1.mlp.act", "head"]),
])
def test_every_model_family_shows_its_activations_and_gradients(model, kind, shape, expected):
    from hydra import compose, initialize_config_dir

    from dltrain.cli import conf_dir
    from dltrain.data.spec import DataSpec
    from dltrain.models import build_model
    from dltrain.probes.gradients import gradient_norms, parameter_layers

    spec = (DataSpec("toy", "language_model", "tokens", shape, vocab_size=5,
                     vocab=tuple("abcde")) if kind == "tokens"
            else DataSpec("toy", "classification", kind, shape, num_classes=3))
    with initialize_config_dir(str(conf_dir()), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}"]
                      + (["model.channels=[4,4]"] if model == "cnn" else ["model.depth=2"]))
    net = build_model(cfg.model, cfg.init, spec)
    x = (torch.randint(0, 5, (4, *shape)) if kind == "tokens" else torch.randn(4, *shape))
    layers = watched_layers(net)
    outputs = layer_outputs(net, x, layers)
    assert [name for name in outputs if name in expected] == expected
    assert all(torch.isfinite(out).all() for out in outputs.values())
    net(x).float().sum().backward()
    grads = {layer: [p.grad for p in ps] for layer, ps in parameter_layers(net).items()}
    norms = gradient_norms(grads)
    assert "head/norm" in norms and norms["total_norm"] > 0
