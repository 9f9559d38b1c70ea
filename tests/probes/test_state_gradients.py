"""probe=[gradients] on a recurrent net: ||dL/dh_t|| against t, checked against a hand-written
loop over the cell, logged at step 0 and every probe.every steps, with its picture; nothing new
for a model without time steps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.data.spec import DataSpec, Split
from dltrain.experiments.rnn_memory import STEP_PREFIX, state_profile
from dltrain.models.rnn import RNN
from dltrain.probes.state_gradients import positions, state_gradients, step_tag
from dltrain.run import run
from tests.probes.helpers import events, records, scalars_at

ADDING = DataSpec("adding", "regression", "signal", (2, 12), num_outputs=1)


def criterion(out, y, x):
    return nn.functional.mse_loss(out, y)


def test_the_norms_are_those_of_a_hand_written_loop_over_the_cell():
    torch.manual_seed(0)
    model = RNN(ADDING, cell="rnn", hidden_size=5, layers=1, bidirectional=False, dropout=0.0)
    batch = Split(torch.randn(7, 2, 12), torch.randn(7, 1))
    norms = state_gradients(model, criterion, batch)
    # h_t = tanh(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), by hand, every h_t kept
    r = model.rnn
    h, hs = torch.zeros(7, 5), []
    for t in range(12):
        h = torch.tanh(batch.x[:, :, t] @ r.weight_ih_l0.T + r.bias_ih_l0
                       + h @ r.weight_hh_l0.T + r.bias_hh_l0)
        hs.append(h)
    loss = criterion(model.head(h), batch.y, batch.x)
    grads = torch.autograd.grad(loss, hs)
    expected = [g.norm().item() for g in grads]
    assert norms.shape == (12,)
    assert norms == pytest.approx(expected, rel=1e-4, abs=1e-12)
    assert norms[0] < norms[-1]  # it fades on the way back


def test_a_model_without_time_steps_has_none():
    model = nn.Linear(3, 1)
    assert state_gradients(model, criterion, Split(torch.randn(4, 3), torch.randn(4, 1))) is None


def test_positions_spread_over_the_sequence_both_ends_included():
    assert positions(5) == [1, 2, 3, 4, 5]
    spread = positions(200)
    assert spread[0] == 1 and spread[-1] == 200 and len(spread) == 16
    assert step_tag(7) == "probe/gradients/state/step_0007" == f"{STEP_PREFIX}0007"


def test_the_run_logs_the_profile_at_step_0_and_every_probe_point(make_cfg, tmp_path):
    cfg = make_cfg("data=adding", "data.length=20", "data.n_train=300", "data.n_test=100",
                   "model=rnn", "model.hidden_size=8", "model.cell=gru", "probe=[gradients]",
                   "probe.every=5", "probe.gradients.histograms=false", "trainer=smoke",
                   "trainer.max_steps=10", "trainer.max_epochs=5", "trainer.threads=1")
    threads = torch.get_num_threads()
    try:
        assert run(cfg, tmp_path).status == "completed"
    finally:
        torch.set_num_threads(threads)
    for step in (0, 5, 10):
        found = scalars_at(tmp_path, step, "probe/gradients/state/")
        assert sorted(found) == [step_tag(t) for t in positions(20)]
        assert all(v >= 0 for v in found.values())
    # the layer norms the probe logged before are still there
    assert "probe/gradients/rnn/norm" in scalars_at(tmp_path, 0, "probe/gradients/")
    (at, profile) = state_profile(records(tmp_path), 0)
    assert at == 0 and list(profile) == positions(20)
    assert state_profile(records(tmp_path))[0] == 10
    images = events(tmp_path).Images("probe/gradients/state")
    assert [i.step for i in images] == [0, 5, 10]
    assert images[0].encoded_image_string[:4] == b"\x89PNG"
