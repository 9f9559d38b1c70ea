import copy
import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from dltrain.cli import conf_dir
from dltrain.config import validate
from dltrain.errors import ConfigError
from dltrain.optim import (
    Penalty,
    build_optimizer,
    build_scheduler,
    decay_groups,
    penalties,
    steps_per_batch,
)


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
    assert build_scheduler(make_cfg("sched=none").sched, opt, 10) is None


def test_the_default_schedule_warms_up_then_anneals_but_not_under_lbfgs(make_cfg):
    cfg = make_cfg()
    assert cfg.sched.name == "auto" and cfg.optim.lr == 0.003
    opt = build_optimizer(cfg.optim, small_net())
    sched = build_scheduler(cfg.sched, opt, total_steps=20)
    rates = []
    for _ in range(20):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    # 2 steps of warm-up (10% of 20) from 0, then cosine from the peak to 0 at step 20
    assert rates[:3] == pytest.approx([0.0, 0.0015, 0.003])
    assert rates[11] == pytest.approx(0.0015 * (1 + math.cos(math.pi * 9 / 18)))
    lbfgs = build_optimizer(make_cfg("optim=lbfgs").optim, small_net())
    assert build_scheduler(cfg.sched, lbfgs, total_steps=20) is None


# --- kernels: fused by default where torch has them, the same steps as the per-tensor loop ----

FUSABLE = ("adam", "adamw", "sgd", "momentum", "nesterov")  # torch has fused kernels for these


def stepped(opt: torch.optim.Optimizer, net: nn.Module, steps: int = 5) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(16, 3, generator=g), torch.randn(16, 2, generator=g)
        opt.zero_grad(set_to_none=True)
        nn.functional.mse_loss(net(x), y).backward()
        opt.step()
    return [p.detach().clone() for p in net.parameters()]


@pytest.mark.parametrize("name", FUSABLE)
def test_the_default_optimiser_is_fused_on_the_cpu(make_cfg, name):
    opt = build_optimizer(make_cfg(f"optim={name}").optim, small_net())
    assert opt.defaults["fused"] is True
    assert all(group["fused"] is True for group in opt.param_groups)


@pytest.mark.parametrize(("name", "extra"), [
    ("adam", []),
    ("adamw", []),  # weight decay on the weights' group only
    ("momentum", []),
    ("nesterov", ["optim.weight_decay=0.01"]),
    ("sgd", []),
])
def test_fused_steps_equal_the_per_tensor_loop(make_cfg, name, extra):
    fused = build_optimizer(make_cfg(f"optim={name}", *extra).optim, net_a := small_net())
    plain = build_optimizer(make_cfg(f"optim={name}", "optim.fused=false", *extra).optim,
                            net_b := small_net())
    assert fused.defaults["fused"] is True and plain.defaults["fused"] is False
    for a, b in zip(stepped(fused, net_a), stepped(plain, net_b), strict=True):
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)
    start = small_net()
    assert any(not torch.equal(a, s) for a, s in zip(net_a.parameters(), start.parameters(),
                                                     strict=True))  # the steps moved it


def test_optimisers_without_fused_kernels_are_built_as_before(make_cfg):
    rmsprop = build_optimizer(make_cfg("optim=rmsprop").optim, small_net())
    assert "fused" not in rmsprop.defaults and rmsprop.defaults["foreach"] is None
    lbfgs = build_optimizer(make_cfg("optim=lbfgs").optim, small_net())
    assert isinstance(lbfgs, torch.optim.LBFGS) and "fused" not in lbfgs.defaults


def test_where_torch_has_no_fused_kernel_the_default_falls_back_quietly(make_cfg):
    # torch has no fused kernels for parameters on the meta device, nor for complex ones
    meta = nn.Linear(3, 2, device="meta")
    assert build_optimizer(make_cfg("optim=adam").optim, meta).defaults["fused"] is None
    complex_net = nn.Linear(3, 2, dtype=torch.complex64)
    assert build_optimizer(make_cfg("optim=sgd").optim, complex_net).defaults["fused"] is None


@pytest.mark.parametrize(("overrides", "device", "message"), [
    (["optim.fused=true"], "meta", r"optim.fused=true: torch .* not for torch.float32 "
                                   r"parameters on meta; set optim.fused=null"),
    (["optim.fused=true", "optim.foreach=true"], "cpu", "exclude each other"),
    (["optim=rmsprop", "+optim.fused=true"], "cpu",
     "optim=rmsprop does not accept its config: .*'fused'"),
    (["optim=lbfgs", "+optim.fused=true"], "cpu",
     "optim=lbfgs does not accept its config: .*'fused'"),
])
def test_an_explicit_fused_kernel_torch_lacks_is_a_config_error(make_cfg, overrides, device,
                                                                  message):
    with pytest.raises(ConfigError, match=message):
        build_optimizer(make_cfg(*overrides).optim, nn.Linear(3, 2, device=device))


def test_a_kernel_choice_that_is_not_a_boolean_is_refused_by_its_rule(make_cfg):
    with pytest.raises(ConfigError, match=r"optim\.fused=maybe must be null, true or false"):
        validate(make_cfg("optim.fused=maybe"))


def test_an_explicit_choice_is_passed_as_written(make_cfg):
    foreach = build_optimizer(make_cfg("optim.foreach=true").optim, small_net())
    assert foreach.defaults["foreach"] is True and foreach.defaults["fused"] is None
    off = build_optimizer(make_cfg("optim.fused=false").optim, small_net())
    assert off.defaults["fused"] is False and off.defaults["foreach"] is None


def test_a_checkpoint_restores_the_state_exactly_and_keeps_this_run_s_kernel(make_cfg):
    """Save after 3 steps, load into a fresh optimiser, step on: the same as never stopping.
    A state saved by the per-tensor loop (an older run) loads the same into a fused optimiser,
    which stays fused: the checkpoint brings the numbers, this run picks the kernel."""
    cfg = make_cfg("optim=adamw").optim
    straight = build_optimizer(cfg, net := small_net())
    stepped(straight, net, 3)
    weights = copy.deepcopy(net.state_dict())
    state = copy.deepcopy(straight.state_dict())  # (the kernels update the live state in place)
    after = stepped(straight, net, 4)

    for saved_by in (cfg, make_cfg("optim=adamw", "optim.fused=false").optim):
        source = build_optimizer(saved_by, small_net())
        # (a deep copy, as torch.load gives: load_state_dict keeps the tensors it is handed)
        source.load_state_dict(copy.deepcopy(state))  # the state as that optimiser saves it
        assert all(g["fused"] is (saved_by is cfg) for g in source.state_dict()["param_groups"])
        resumed_net = small_net()
        resumed_net.load_state_dict(weights)
        resumed = build_optimizer(cfg, resumed_net)
        resumed.load_state_dict(source.state_dict())
        assert all(group["fused"] is True for group in resumed.param_groups)
        loaded = resumed.state_dict()["state"]
        for index, entry in state["state"].items():
            for key, value in entry.items():
                assert loaded[index][key].dtype == value.dtype
                assert torch.equal(loaded[index][key], value)
        for a, b in zip(stepped(resumed, resumed_net, 4), after, strict=True):
            assert torch.equal(a, b)


# --- builders take plain values as well as DictConfig -----------------------------------------

OPTIMS = sorted(p.stem for p in (Path(conf_dir()) / "optim").glob("*.yaml"))
SCHEDS = sorted(p.stem for p in (Path(conf_dir()) / "sched").glob("*.yaml"))


@pytest.mark.parametrize("name", OPTIMS)
def test_build_optimizer_takes_plain_values(make_cfg, name):
    node = make_cfg(f"optim={name}").optim
    a = build_optimizer(node, small_net())
    b = build_optimizer(OmegaConf.to_container(node, resolve=True), small_net())
    assert type(a) is type(b)
    assert [{k: v for k, v in g.items() if k != "params"} for g in a.param_groups] == \
        [{k: v for k, v in g.items() if k != "params"} for g in b.param_groups]


@pytest.mark.parametrize("name", SCHEDS)
def test_build_scheduler_takes_plain_values(make_cfg, name):
    node = make_cfg(f"sched={name}").sched

    def rates(cfg) -> list[float]:
        opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1, momentum=0.9)
        sched = build_scheduler(cfg, opt, total_steps=12)
        out = []
        for _ in range(12):
            out.append(opt.param_groups[0]["lr"])
            opt.step()
            if steps_per_batch(sched):
                sched.step()
            elif sched is not None:
                sched.step(1.0)  # plateau: a flat validation loss
        return out

    assert rates(node) == rates(OmegaConf.to_container(node, resolve=True))


def test_penalties_take_plain_values(make_cfg):
    node = make_cfg("reg=[l1,l2]").penalty
    plain = penalties(OmegaConf.to_container(node, resolve=True))
    assert plain == penalties(node) == [Penalty(1e-5, 1), Penalty(1e-4, 2)]


def test_builders_hold_no_defaults_of_their_own():
    """conf/ holds every default: a node without a key conf/ defines is a KeyError, not a
    value made up here."""
    with pytest.raises(KeyError):
        penalties({"l1": 0.0})
    opt = torch.optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    with pytest.raises(KeyError):
        build_scheduler({"name": "step", "_target_": "torch.optim.lr_scheduler.StepLR",
                         "gamma": 0.1}, opt, 10)  # no step_size
