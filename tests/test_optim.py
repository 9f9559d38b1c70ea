import math

import pytest
import torch
from torch import nn

from dltrain.optim import Penalty, build_optimizer, build_scheduler, decay_groups, penalties


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


def test_no_decay_group_holds_exactly_the_one_dimensional_parameters():
    net = small_net()
    decay, no_decay = decay_groups(net, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(p) for p in net.parameters() if p.ndim >= 2}
    assert {id(p) for p in no_decay["params"]} == {id(p) for p in net.parameters() if p.ndim == 1}


def test_optimiser_from_config(make_cfg):
    opt = build_optimizer(make_cfg("optim=sgd", "optim.lr=0.3", "optim.momentum=0.5").optim,
                          small_net())
    assert isinstance(opt, torch.optim.SGD)
    assert opt.param_groups[0]["lr"] == 0.3 and opt.param_groups[0]["momentum"] == 0.5
    adam = build_optimizer(make_cfg("optim=adam").optim, small_net())
    assert isinstance(adam, torch.optim.Adam) and adam.param_groups[0]["betas"] == (0.9, 0.999)


def test_l2_penalty_under_sgd_equals_weight_decay_of_twice_lambda(make_cfg):
    """The lecture's identity: d/dw (lambda * w^2) = 2 lambda w, which is SGD's weight decay."""
    lam, x, y = 0.01, torch.randn(16, 3), torch.randn(16, 2)
    a, b = small_net(), small_net()
    opt_a = build_optimizer(make_cfg("optim=sgd", "optim.lr=0.1").optim, a)
    opt_b = build_optimizer(make_cfg("optim=sgd", "optim.lr=0.1",
                                     f"optim.weight_decay={2 * lam}").optim, b)
    l2 = Penalty(lam, 2)
    for _ in range(5):
        for net, opt, extra in ((a, opt_a, True), (b, opt_b, False)):
            loss = nn.functional.mse_loss(net(x), y)
            if extra:
                loss = loss + l2([p for p in net.parameters() if p.ndim >= 2])
            opt.zero_grad()
            loss.backward()
            opt.step()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.allclose(pa, pb, atol=1e-6)


def test_penalty_values():
    w = [torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0]])]
    assert Penalty(0.5, 1)(w).item() == pytest.approx(3.0)
    assert Penalty(0.5, 2)(w).item() == pytest.approx(7.0)


def test_penalties_from_config(make_cfg):
    assert penalties(make_cfg().penalty) == []
    terms = penalties(make_cfg("reg=[l1,l2]").penalty)
    assert [(t.power, t.coefficient) for t in terms] == [(1, 1e-5), (2, 1e-4)]


def test_cosine_schedule_follows_its_formula(make_cfg):
    net = small_net()
    opt = build_optimizer(make_cfg("optim=sgd", "optim.lr=0.1").optim, net)
    sched = build_scheduler(make_cfg("sched=cosine").sched, opt, total_steps=20)
    for step in range(1, 21):
        opt.step()
        sched.step()
        expected = 0.05 * (1 + math.cos(math.pi * step / 20))
        assert opt.param_groups[0]["lr"] == pytest.approx(expected, abs=1e-9)


def test_no_schedule(make_cfg):
    opt = build_optimizer(make_cfg().optim, small_net())
    assert build_scheduler(make_cfg().sched, opt, 10) is None
