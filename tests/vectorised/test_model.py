"""The stack's traced step computes what its untraced step computes: each member's loss and
gradient, and batch norm's running statistics, step after step."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from dltrain.optim import penalised_weights
from dltrain.vectorised.model import StackedModel
from dltrain.vectorised.train import build_members
from tests.vectorised.test_train import CASES, SMALL


def stacks(make_cfg, tmp_path, case: str) -> tuple[StackedModel, StackedModel, list, object]:
    shared, variants = CASES[case]
    cfgs = [make_cfg(*SMALL, *shared, *v.split()) for v in variants]
    members, data, _ = build_members(cfgs, [tmp_path / str(i) for i in range(len(cfgs))],
                                     torch.device("cpu"))
    models = [m.job.parts.model for m in members]
    penalised = {id(w) for w in penalised_weights(models[0])}
    names = [n for n, p in models[0].named_parameters() if id(p) in penalised]
    loss = members[0].job.parts.loss
    made = [StackedModel([copy.deepcopy(m) for m in models], loss, names, torch.device("cpu"),
                         trace=trace) for trace in (True, False)]
    return made[0], made[1], members, data[0].train


@pytest.mark.filterwarnings("ignore:grad and param do not obey")  # as the stack sees it
@pytest.mark.parametrize("case", ["momentum", "batchnorm"])  # dropout, penalties; batch norm
def test_the_traced_step_is_the_untraced_step(make_cfg, tmp_path, case):
    traced, untraced, members, train = stacks(make_cfg, tmp_path, case)
    n, batch = len(members), 16
    generator = torch.Generator().manual_seed(0)
    l1 = torch.tensor([0.0, 0.01, 0.0][:n])
    l2 = torch.tensor([0.02, 0.0, 0.1][:n])
    for model in (traced, untraced):
        model.find_dropout_shapes(train.x[:batch])
    for step in range(5):  # traced from the third on
        idx = torch.randint(0, len(train), (n, batch), generator=generator)
        x, y = train.x[idx], train.y[idx]
        seeds = [torch.Generator().manual_seed(100 * step + i) for i in range(n)]
        masks = traced.masks(seeds)
        again = untraced.masks([torch.Generator().manual_seed(100 * step + i) for i in range(n)])
        got = traced.gradients(x, y, masks, l1, l2)
        want = untraced.gradients(x, y, again, l1, l2)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(traced.grad, untraced.grad, rtol=1e-5, atol=1e-6)
        assert traced.grad.abs().sum() > 0
        for name, buffer in untraced.buffers.items():  # running statistics, step counts
            torch.testing.assert_close(traced.buffers[name], buffer, rtol=1e-5, atol=1e-6)
        with torch.no_grad():  # the same SGD step for both, so later steps differ in weights
            for model in (traced, untraced):
                model.flat.sub_(0.1 * model.grad)
    assert list(traced.traced.values()) != [None] and len(traced.traced) == 1
    if case == "batchnorm":
        assert any(b.abs().sum() > 0 for n, b in traced.buffers.items() if "running_mean" in n)


def test_a_trace_keeps_no_view_that_changes_nothing():
    from torch.fx.experimental.proxy_tensor import make_fx

    from dltrain.vectorised.trace import drop_identity_views

    def f(x: torch.Tensor) -> torch.Tensor:
        return (x.view(2, 3).expand(2, 3) * 2).view(3, 2)

    x = torch.arange(6.0).view(2, 3)
    traced = make_fx(f)(x)
    drop_identity_views(traced)
    aten = torch.ops.aten
    assert [n.target for n in traced.graph.nodes if n.op == "call_function"] == [
        aten.mul.Tensor, aten.view.default]
    torch.testing.assert_close(traced(x + 1), f(x + 1))


@pytest.mark.filterwarnings("ignore:grad and param do not obey")
def test_a_call_the_tracer_refuses_runs_untraced(make_cfg, tmp_path, monkeypatch, caplog):
    import torch.fx.experimental.proxy_tensor as proxy_tensor

    def refuse(*args, **kwargs):
        raise RuntimeError("this op cannot be traced")

    monkeypatch.setattr(proxy_tensor, "make_fx", refuse)
    caplog.set_level(logging.INFO, logger="dltrain")
    refused, untraced, members, train = stacks(make_cfg, tmp_path, "batchnorm")
    n = len(members)
    for model in (refused, untraced):
        model.find_dropout_shapes(train.x[:8])
    for step in range(4):
        x, y = train.x[step * 8:(step + 1) * 8].expand(n, 8, 2), train.y[:8].expand(n, 8)
        masks = [m.masks([torch.Generator().manual_seed(i) for i in range(n)])
                 for m in (refused, untraced)]
        got = refused.gradients(x, y, masks[0], None, None)
        torch.testing.assert_close(got, untraced.gradients(x, y, masks[1], None, None))
        torch.testing.assert_close(refused.grad, untraced.grad)
    assert list(refused.traced.values()) == [None]
    assert "is not traced (RuntimeError: this op cannot be traced); it runs untraced" in caplog.text


def test_a_stack_computes_numbers_below_float32s_normal_range_as_zero_while_it_trains():
    from dltrain.runtime import flush_denormals

    def tiny() -> float:
        return (torch.tensor([1e-39]) * 1.0).item()

    assert tiny() != 0
    with flush_denormals(torch.device("cpu")):
        assert tiny() == 0
        with flush_denormals(torch.device("cpu")):  # nested: the outer one restores
            assert tiny() == 0
        assert tiny() == 0
    assert tiny() != 0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_stack_on_the_gpu_ends_as_its_runs_alone(make_cfg, tmp_path):
    """The traced step and the fused Adam kernel on CUDA: members against their runs."""
    from dltrain.run import run
    from dltrain.vectorised.train import train_stack

    cfgs = [make_cfg(*SMALL, "model.hidden=[16,16]", "optim=adam", "trainer.max_epochs=3",
                     "trainer.device=cuda", "logger=none", f"trainer.seed={seed}",
                     f"optim.lr={lr}") for seed, lr in ((0, 0.01), (1, 0.003))]
    stacked = train_stack(cfgs, [tmp_path / f"stack{i}" for i in range(len(cfgs))])
    for i, (cfg, member) in enumerate(zip(cfgs, stacked, strict=True)):
        alone = run(cfg, tmp_path / f"alone{i}").summary
        assert member.summary["device"].startswith("cuda")
        for key, value in alone["test"].items():
            assert member.summary["test"][key] == pytest.approx(value, rel=1e-3, abs=1e-4)


def test_only_layers_the_stack_computes_exactly_are_stacked():
    from torch import nn

    from dltrain.data.spec import DataSpec
    from dltrain.models.mlp import MLP
    from dltrain.vectorised.model import Unstackable, check_layers

    spec = DataSpec("toy", "classification", "vector", (3,), num_classes=2)
    model = MLP(spec, hidden=[4], depth=1, width=4, activation="relu", dropout=0.0,
                batchnorm=False)
    check_layers(model, "mlp")  # MLP declares itself stackable; its layers are torch's

    class Odd(nn.Module):  # a module of its own that declares nothing
        def forward(self, x):
            return x

    model.hidden.append(Odd())
    with pytest.raises(Unstackable, match="model=mlp has layers the stack does not train: Odd"):
        check_layers(model, "mlp")
