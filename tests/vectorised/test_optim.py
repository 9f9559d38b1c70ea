"""A vectorised optimiser step equals each member's own torch optimiser, step for step."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from dltrain.optim import decay_groups
from dltrain.vectorised.optim import Layout, load_member_state, stacked_optimizer

MEMBERS = 3


def model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))


# Each member its own hyperparameters, weight decay on weights only (as dltrain builds
# groups); one member of the momentum kinds has none (torch keeps no buffer for it).
KINDS = {
    "sgd": lambda m, i: torch.optim.SGD(decay_groups(m, [0.0, 0.01, 0.1][i]),
                                        lr=[0.1, 0.05, 0.3][i]),
    "momentum": lambda m, i: torch.optim.SGD(decay_groups(m, [0.0, 0.01, 0.0][i]),
                                             lr=[0.1, 0.05, 0.3][i], momentum=[0.9, 0.0, 0.5][i]),
    "nesterov": lambda m, i: torch.optim.SGD(decay_groups(m, [0.001, 0.0, 0.0][i]),
                                             lr=[0.1, 0.05, 0.3][i], momentum=[0.9, 0.8, 0.5][i],
                                             nesterov=True),
    "adam": lambda m, i: torch.optim.Adam(decay_groups(m, [0.0, 0.01, 0.1][i]),
                                          lr=[1e-3, 1e-2, 3e-3][i],
                                          betas=[(0.9, 0.999), (0.8, 0.99), (0.95, 0.9)][i],
                                          eps=[1e-8, 1e-6, 1e-8][i]),
    "adamw": lambda m, i: torch.optim.AdamW(decay_groups(m, [0.01, 0.0, 0.5][i]),
                                            lr=[1e-3, 1e-2, 3e-3][i],
                                            betas=[(0.9, 0.999), (0.8, 0.99), (0.95, 0.9)][i]),
    # betas and eps alike (a sweep of seeds, rates, decays): torch's fused kernel's path
    "adam, shared betas": lambda m, i: torch.optim.Adam(decay_groups(m, [0.0, 0.01, 0.1][i]),
                                                        lr=[1e-3, 1e-2, 3e-3][i]),
    "adamw, shared betas": lambda m, i: torch.optim.AdamW(decay_groups(m, [0.01, 0.0, 0.5][i]),
                                                          lr=[1e-3, 1e-2, 3e-3][i]),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_stacked_step_equals_each_members_own_steps(kind):
    alone = [model(i) for i in range(MEMBERS)]
    optimizers = [KINDS[kind](m, i) for i, m in enumerate(alone)]
    stacked_models = [model(i) for i in range(MEMBERS)]  # the same weights, stacked
    layout = Layout.of(stacked_models[0])
    flat = layout.flatten(stack_module_state(stacked_models)[0]).detach().clone()
    stacked = stacked_optimizer([KINDS[kind](m, i) for i, m in enumerate(stacked_models)],
                                stacked_models, layout, torch.device("cpu"))
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        grads = {name: torch.randn(MEMBERS, *shape, generator=gen)
                 for name, shape in zip(layout.names, layout.shapes, strict=True)}
        for i, (m, opt) in enumerate(zip(alone, optimizers, strict=True)):
            for name, p in m.named_parameters():
                p.grad = grads[name][i].clone()
            opt.step()
        stacked.step(flat, layout.flatten(grads))
    if kind.startswith("adam"):  # which of its two paths the stacked Adam took
        assert (None not in stacked.shared) == kind.endswith("shared betas")

    for i, (m, opt) in enumerate(zip(alone, optimizers, strict=True)):
        for name, value in layout.row(flat[i]).items():
            torch.testing.assert_close(value, m.get_parameter(name).detach(), rtol=1e-6,
                                       atol=1e-7)
        # the state, in torch's own format: what a resumed run's optimiser continues from
        state = stacked.member_state(i)
        named = dict(m.named_parameters())
        assert set(state) == {n for n in layout.names if opt.state[named[n]]}
        for name, entries in state.items():
            mine = opt.state[named[name]]
            assert set(entries) == set(mine)
            for key, value in entries.items():
                torch.testing.assert_close(value, mine[key], rtol=1e-6, atol=1e-7)


def test_a_member_state_loads_into_its_own_optimiser_and_steps_on_alike():
    models = [model(i) for i in range(MEMBERS)]
    layout = Layout.of(models[0])
    flat = layout.flatten(stack_module_state(models)[0]).detach().clone()
    optimizers = [KINDS["adam"](m, i) for i, m in enumerate(models)]
    stacked = stacked_optimizer(optimizers, models, layout, torch.device("cpu"))
    grads = layout.flatten({n: torch.ones(MEMBERS, *s)
                            for n, s in zip(layout.names, layout.shapes, strict=True)})
    for _ in range(3):
        stacked.step(flat, grads)

    # member 1 continues on its own from the stack's state
    m, opt = models[1], optimizers[1]
    with torch.no_grad():
        for name, value in layout.row(flat[1]).items():
            m.get_parameter(name).copy_(value)
    load_member_state(opt, m, stacked.member_state(1))
    restored = torch.optim.Adam(decay_groups(model(1), 0.01), lr=1e-2)
    restored.load_state_dict(opt.state_dict())  # what `dltrain resume` does with last.pt
    for p in m.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    stacked.step(flat, grads)
    for name, value in layout.row(flat[1]).items():
        torch.testing.assert_close(value, m.get_parameter(name).detach(), rtol=1e-6, atol=1e-7)


def test_members_with_different_optimisers_are_refused():
    models = [model(0), model(1)]
    with pytest.raises(ValueError, match="different optimisers"):
        stacked_optimizer([torch.optim.SGD(models[0].parameters(), lr=0.1),
                           torch.optim.Adam(models[1].parameters())], models,
                          Layout.of(models[0]), torch.device("cpu"))
