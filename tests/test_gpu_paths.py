"""The GPU paths' decisions, checked on any machine; the GPU runs themselves are marked `gpu`."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from dltrain.config import plain
from dltrain.job import build_job, compiles
from dltrain.optim import build_optimizer
from dltrain.run import run
from dltrain.targets import call_target


def test_optional_runtime_keywords_go_only_where_taken_and_unset():
    node = OmegaConf.create({"_target_": "torch.optim.Adam", "lr": 0.1})
    params = [torch.nn.Parameter(torch.zeros(2))]
    adam = call_target(node, "optim", optional={"fused": False, "nonsense": 1}, params=params)
    assert adam.defaults["fused"] is False  # taken by Adam, unset in the config
    node.fused = None
    assert call_target(node, "optim", optional={"fused": False},
                       params=params).defaults["fused"] is False
    lbfgs = OmegaConf.create({"_target_": "torch.optim.LBFGS"})
    assert isinstance(call_target(lbfgs, "optim", optional={"fused": True}, params=params),
                      torch.optim.LBFGS)  # no fused keyword: nothing passed


def test_fused_kernels_are_asked_for_wherever_torch_has_them(make_cfg):
    assert build_optimizer(make_cfg().optim, torch.nn.Linear(2, 2)).defaults["fused"] is True
    meta = torch.nn.Linear(2, 2, device="meta")  # no fused kernel there: torch's default
    assert build_optimizer(make_cfg().optim, meta).defaults["fused"] is None


def test_compile_is_skipped_for_runs_too_short_to_repay_it(make_cfg):
    def trainer(*overrides):
        return plain(make_cfg(*overrides))["trainer"]

    assert not compiles(trainer("trainer.compile=false"), 10_000)
    assert not compiles(trainer("trainer.compile=true", "trainer.compile_min_steps=500"), 100)
    assert compiles(trainer("trainer.compile=true", "trainer.compile_min_steps=500"), 500)


def test_channels_last_lays_out_model_and_images(make_cfg):
    cfg = make_cfg("model=cnn", "data.n_train=300", "data.n_test=50",
                   "trainer.channels_last=true", "trainer.device=cpu")
    job = build_job(cfg, torch.device("cpu"))
    assert job.data.train.x.is_contiguous(memory_format=torch.channels_last)

    def second_conv(job):  # (the first has one input channel: both layouts are the same)
        return [m for m in job.parts.model.modules() if isinstance(m, torch.nn.Conv2d)][1]

    assert second_conv(job).weight.is_contiguous(memory_format=torch.channels_last)
    auto = build_job(make_cfg("model=cnn", "data.n_train=300", "data.n_test=50"),
                     torch.device("cpu"))
    assert second_conv(auto).weight.is_contiguous()  # auto on a CPU: NCHW as built


def test_channels_last_trains_to_the_same_result(make_cfg, tmp_path):
    base = ["model=cnn", "data.n_train=600", "data.n_test=100", "trainer=smoke",
            "logger=none"]
    a = run(make_cfg(*base), tmp_path / "a").summary["test"]
    b = run(make_cfg(*base, "trainer.channels_last=true"), tmp_path / "b").summary["test"]
    assert a["accuracy"] == pytest.approx(b["accuracy"], abs=0.02)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("extra", [[], ["trainer.precision=bf16"],
                                   ["trainer.compile=true", "trainer.compile_min_steps=0"]])
def test_a_cnn_trains_on_the_gpu(make_cfg, tmp_path, extra):
    summary = run(make_cfg("model=cnn", "trainer.device=cuda", "trainer.max_epochs=2",
                           "logger=none", *extra), tmp_path).summary
    assert summary["status"] == "completed" and summary["device"].startswith("cuda")
    assert summary["test"]["accuracy"] > 0.8
