"""FLOPs per sample, TFLOP/s achieved and MFU: counted by torch, checked against hand sums."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.models.transformer import Transformer
from dltrain.perf import peak_tflops, training_flops_per_sample, utilisation
from dltrain.run import run


def test_a_training_step_costs_three_forward_passes():
    model = nn.Sequential(nn.Linear(10, 20), nn.ReLU(), nn.Linear(20, 5)).train()
    # a forward pass: 2 FLOPs (multiply, add) per weight of each matmul, per sample
    assert training_flops_per_sample(model, torch.randn(8, 10)) == 3 * 2 * (10 * 20 + 20 * 5)
    assert model.training  # its mode is given back


def test_a_transformer_counts_its_attention_too():
    width, depth, tokens, vocab = 32, 2, 16, 50
    spec = DataSpec("chars", "language_model", "tokens", (tokens,), vocab_size=vocab)
    model = Transformer(spec, width=width, depth=depth, heads=4, mlp_ratio=4.0, patch_size=None,
                        readout="mean", activation="gelu", dropout=0.0, norm="layer")
    per_sample = training_flops_per_sample(model, torch.randint(0, vocab, (4, tokens)))
    # per token, to train: 6 FLOPs per weight of the blocks' matmuls (q, k, v, out: 4 d^2; the
    # 4x MLP: 8 d^2) and of the head (d x vocab); attention scores and mixing 12 L d T (the
    # PaLM paper's count); embeddings are lookups, norms are not counted
    expected = tokens * (6 * depth * 12 * width**2 + 12 * depth * width * tokens
                         + 6 * width * vocab)
    assert per_sample == pytest.approx(expected, rel=0.01)


def test_mfu_needs_a_known_peak(monkeypatch):
    assert peak_tflops(torch.device("cpu"), "32") is None
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 PCIe")
    assert peak_tflops(torch.device("cuda"), "bf16") == 756.0
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H100 80GB HBM3")
    assert peak_tflops(torch.device("cuda"), "32") == 66.9
    assert utilisation(1e9, 2000.0, 989.4) == {"flops_per_sample": 1e9, "tflops": 2.0,
                                               "mfu": round(2.0 / 989.4, 4)}
    assert utilisation(1e9, 2000.0, None) == {"flops_per_sample": 1e9, "tflops": 2.0}


def test_a_transformer_run_reports_its_flops(make_cfg, tmp_path):
    cfg = make_cfg("model=transformer", "model.width=32", "model.depth=1", "trainer=smoke",
                   "logger=none")
    summary = run(cfg, tmp_path / "run").summary
    assert summary["flops_per_sample"] > 0 and "mfu" not in summary  # no peak known on a CPU
    assert summary["tflops"] == pytest.approx(
        summary["flops_per_sample"] * summary["samples_per_s"] / 1e12, rel=1e-3, abs=1e-4)
    mlp = run(make_cfg("data=moons", "trainer=smoke", "logger=none"), tmp_path / "mlp").summary
    assert "flops_per_sample" not in mlp


def test_a_failing_count_costs_the_run_nothing(make_cfg, tmp_path, monkeypatch):
    def broken(model, x):
        raise RuntimeError("no formula for this kernel")

    cfg = make_cfg("model=transformer", "model.width=32", "model.depth=1", "trainer=smoke",
                   "logger=none")
    counted = run(cfg, tmp_path / "counted").summary
    monkeypatch.setattr("dltrain.evaluate.training_flops_per_sample", broken)
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed" and "flops_per_sample" not in result.summary
    # the same training and test as the run whose count worked: only the count is missing
    assert result.summary["test"] == counted["test"] and result.summary["steps"] == 20
    assert result.summary["best"] == counted["best"]
