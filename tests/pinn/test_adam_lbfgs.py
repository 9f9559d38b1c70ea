"""optim=adam_lbfgs: Adam's steps until switch_at, L-BFGS's after, a stalled L-BFGS started
again, and its state whole through a checkpoint."""

from __future__ import annotations

import copy

import torch

from dltrain.adam_lbfgs import AdamLBFGS

LBFGS = {"lr": 1.0, "max_iter": 5, "max_eval": 8, "history_size": 10,
         "line_search_fn": "strong_wolfe"}


def rosenbrock(p: torch.Tensor) -> torch.Tensor:
    return (1 - p[0]) ** 2 + 100 * (p[1] - p[0] ** 2) ** 2


def make(switch_at: int) -> tuple[torch.nn.Parameter, AdamLBFGS]:
    p = torch.nn.Parameter(torch.tensor([-1.5, 2.0], dtype=torch.float64))
    return p, AdamLBFGS([p], lr=1e-2, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0,
                        switch_at=switch_at, lbfgs=LBFGS)


def closure_of(p, opt, calls):
    def closure():
        calls.append(1)
        opt.zero_grad()
        loss = rosenbrock(p)
        loss.backward()
        return loss
    return closure


def test_adam_until_switch_at_then_lbfgs():
    p, opt = make(switch_at=3)
    adam = torch.optim.Adam([q := torch.nn.Parameter(p.detach().clone())], lr=1e-2)
    for _ in range(3):
        calls: list = []
        opt.step(closure_of(p, opt, calls))
        assert len(calls) == 1 and opt.phase == ("adam" if opt.taken < 3 else "lbfgs")
        adam.zero_grad()
        rosenbrock(q).backward()
        adam.step()
    assert torch.equal(p.detach(), q.detach())  # exactly Adam's steps
    calls = []
    before = float(rosenbrock(p.detach()))
    opt.step(closure_of(p, opt, calls))
    assert len(calls) > 2  # a line search: several evaluations in one step
    assert float(rosenbrock(p.detach())) < before
    for _ in range(40):
        opt.step(closure_of(p, opt, []))
    assert float(rosenbrock(p.detach())) < 1e-10  # L-BFGS reaches the minimum (1, 1)


def test_a_stalled_lbfgs_starts_again():
    p, opt = make(switch_at=0)
    for _ in range(40):
        opt.step(closure_of(p, opt, []))
    # at the minimum every call stops early (nothing left to descend): each is a restart
    restarts = opt.restarts
    opt.step(closure_of(p, opt, []))
    assert opt.restarts == restarts + 1
    assert opt.lbfgs.state == {}  # the history was thrown away


def test_state_dict_carries_both_phases():
    p, opt = make(switch_at=2)
    for _ in range(4):
        opt.step(closure_of(p, opt, []))
    saved = copy.deepcopy(opt.state_dict())
    q, other = make(switch_at=2)
    with torch.no_grad():
        q.copy_(p)
    other.load_state_dict(saved)
    assert (other.taken, other.restarts) == (opt.taken, opt.restarts)
    for _ in range(3):
        opt.step(closure_of(p, opt, []))
        other.step(closure_of(q, other, []))
    assert torch.equal(p.detach(), q.detach())
