"""data=darcy and data=burgers_operator: generated once, cached by a checksum of their
parameters, deterministic, split and scaled as the operators train on them."""

from __future__ import annotations

import pytest
import torch

from dltrain.config import plain
from dltrain.data import build_data
from dltrain.data.operators import OperatorData, burgers, darcy
from dltrain.data.operators.cache import Draw


def data_cfg(make_cfg, root, name="darcy", *overrides: str) -> dict:
    small = ["data.n_train=30", "data.n_test=6", "data.resolution=16",
             "data.test_resolution=32"]
    return plain(make_cfg(f"data={name}", f"data.root={root}", *small, *overrides).data)


def test_darcy_splits_scales_and_tests_at_a_second_resolution(make_cfg, tmp_path):
    data = build_data(data_cfg(make_cfg, tmp_path))
    assert isinstance(data, OperatorData)
    assert (len(data.train), len(data.val), len(data.test)) == (27, 3, 6)
    assert data.spec.kind == "image" and data.spec.input_shape == (1, 16, 16)
    assert data.spec.target_shape == (1, 16, 16)
    assert list(data.resolutions) == ["32x32"]
    finer = data.resolutions["32x32"]
    assert finer.x.shape == (6, 1, 32, 32) and finer.y.shape == (6, 1, 32, 32)
    # inputs standardised by the train split; targets divided by their RMS, not shifted, so a
    # relative error is the same in training units and in the data's
    assert float(data.train.x.mean()) == pytest.approx(0.0, abs=1e-5)
    assert float(data.target_scale.mean.abs().max()) == 0.0
    assert float(data.train.y.square().mean()) == pytest.approx(1.0, rel=1e-4)
    # the pressure, in the data's units, is what the solver gave for the stored permeability
    a = data.test.x[:2, 0] * data.norm["std"][0] + data.norm["mean"][0]
    u = data.target_scale.restore(data.test.y[:2])[:, 0]
    assert torch.allclose(darcy.solve(a.round().double()).float(), u, rtol=1e-4, atol=1e-7)
    generation = data.facts["generation"]
    assert generation["cached"] is False and generation["generated_s"] > 0
    assert generation["test_resolutions"] == ["16x16", "32x32"]


def test_generation_is_deterministic_and_cached(make_cfg, tmp_path, monkeypatch):
    cfg = data_cfg(make_cfg, tmp_path / "a", "burgers_operator")
    first = build_data(cfg)
    again = build_data(data_cfg(make_cfg, tmp_path / "b", "burgers_operator"))
    for one, two in ((first.train, again.train), (first.test, again.test),
                     (first.resolutions["32"], again.resolutions["32"])):
        assert torch.equal(one.x, two.x) and torch.equal(one.y, two.y)
    files = sorted((tmp_path / "a" / "operators").glob("burgers_operator-*.npz"))
    assert len(files) == 2  # the training pool and the test draw

    def solver_called(*args, **kwargs):
        raise AssertionError("the cached draw was generated again")

    monkeypatch.setattr(burgers, "generate", solver_called)
    cached = build_data(cfg)
    assert cached.facts["generation"]["cached"] is True
    assert cached.facts["generation"]["generated_s"] == first.facts["generation"]["generated_s"]
    assert torch.equal(cached.train.x, first.train.x)
    assert torch.equal(cached.resolutions["32"].y, first.resolutions["32"].y)
    # another viscosity is another draw: the solver is asked for it
    with pytest.raises(AssertionError, match="generated again"):
        build_data(data_cfg(make_cfg, tmp_path / "a", "burgers_operator", "data.viscosity=0.05"))


def test_a_damaged_cache_file_is_generated_again(make_cfg, tmp_path):
    cfg = data_cfg(make_cfg, tmp_path, "darcy", "data.test_resolution=null")
    first = build_data(cfg)
    assert first.resolutions == {}
    for path in (tmp_path / "operators").glob("*.npz"):
        path.write_bytes(path.read_bytes()[:100])
    again = build_data(cfg)
    assert again.facts["generation"]["cached"] is False
    assert torch.equal(again.train.y, first.train.y)


def test_the_checksum_names_every_parameter():
    base = Draw("burgers_operator", {"viscosity": 0.02}, 10, 0, (64,))
    others = [Draw("darcy", {"viscosity": 0.02}, 10, 0, (64,)),
              Draw("burgers_operator", {"viscosity": 0.03}, 10, 0, (64,)),
              Draw("burgers_operator", {"viscosity": 0.02}, 11, 0, (64,)),
              Draw("burgers_operator", {"viscosity": 0.02}, 10, 1, (64,)),
              Draw("burgers_operator", {"viscosity": 0.02}, 10, 0, (64, 128))]
    sums = {d.checksum() for d in others}
    assert base.checksum() not in sums and len(sums) == len(others)
    assert base.checksum() == Draw("burgers_operator", {"viscosity": 0.02}, 10, 0,
                                   (64,)).checksum()
