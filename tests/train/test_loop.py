"""fit() on tiny problems: loss falls, limits hold, stops and divergence are handled."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dltrain.data.batches import ShuffledBatches
from dltrain.data.spec import Split
from dltrain.errors import DivergedError
from dltrain.log import NullLogger
from dltrain.training.loop import evaluate, fit
from dltrain.training.signals import StopRequest
from dltrain.training.state import Parts, Settings, TrainState
from tests.train.jobs import loop_job

CPU = torch.device("cpu")


def problem(n: int = 256, seed: int = 0) -> tuple[Split, Split]:
    """A linearly separable 2-class problem."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long()
    return Split(x[: n // 2], y[: n // 2]), Split(x[n // 2:], y[n // 2:])


def parts(loss: nn.Module | None = None, lr: float = 0.1) -> Parts:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 16), nn.ReLU(), nn.Linear(16, 2))
    return Parts(model, model, loss or nn.CrossEntropyLoss(),
                 torch.optim.SGD(model.parameters(), lr=lr), None)


def settings(**overrides) -> Settings:
    base = dict(max_epochs=5, max_steps=None, log_every=4, val_every=1, precision="32",
                monitor="val/accuracy", mode="max", eval_batch_size=64)
    return Settings(**{**base, **overrides})


class Recorder(NullLogger):
    def __init__(self, stop_at: int | None = None, stop: StopRequest | None = None) -> None:
        self.points: list[tuple[int, dict]] = []
        self.stop_at, self.stop = stop_at, stop

    def log_metrics(self, metrics, step):
        self.points.append((step, dict(metrics)))
        if self.stop_at is not None and step >= self.stop_at:
            self.stop.request("test")


def train(p: Parts, s: Settings, logger=None, stop=None, state=None, saves=None):
    train_split, val_split = problem()
    saves = [] if saves is None else saves
    state = state or TrainState()
    job = loop_job(p, ShuffledBatches(train_split, 16, seed=0), val_split, "classification", s)
    status = fit(job, state, logger or Recorder(), lambda st, best: saves.append((st.step, best)),
                 stop or StopRequest())
    return status, state, saves


def test_loss_falls_and_accuracy_rises():
    logger = Recorder()
    p = parts()
    _, val_split = problem()
    before = evaluate(p, val_split, "classification", 64, torch.autocast("cpu", enabled=False))
    status, state, saves = train(p, settings(), logger)
    assert status == "completed" and state.epoch == 5 and state.step == 5 * 8
    losses = [m["train/loss"] for _, m in logger.points if "train/loss" in m]
    assert losses[-1] < 0.5 * losses[0]
    assert state.last_val["accuracy"] > 0.9 > before["accuracy"]
    assert [step for step, _ in saves] == [8, 16, 24, 32, 40]  # one save per validation
    assert saves[0][1]  # the first validation is always the best so far


def test_log_points_come_every_log_every_steps_and_before_a_validation():
    logger = Recorder()
    train(parts(), settings(max_epochs=1, log_every=3), logger)
    train_steps = [s for s, m in logger.points if "train/loss" in m]
    assert train_steps == [3, 6, 8]  # 8 batches per epoch: the window is read before the validation
    assert all(m["train/lr"] == 0.1 for _, m in logger.points if "train/lr" in m)


def test_log_points_span_epochs_when_no_validation_comes_between():
    # 8 steps an epoch, validated every 2nd epoch: read every 5 steps and before validations,
    # not at the end of an epoch that is not validated (a full-batch run would log every step)
    logger = Recorder()
    train(parts(), settings(max_epochs=4, log_every=5, val_every=2), logger)
    train_steps = [s for s, m in logger.points if "train/loss" in m]
    assert train_steps == [5, 10, 15, 16, 20, 25, 30, 32]
    val_steps = [s for s, m in logger.points if "val/loss" in m]
    assert val_steps == [16, 32]


def test_max_steps_stops_mid_epoch_and_still_validates():
    logger = Recorder()
    status, state, saves = train(parts(), settings(max_steps=11), logger)
    assert status == "completed" and state.step == 11
    assert (state.epoch, state.batch) == (1, 3)
    assert saves[-1][0] == 11
    val_points = [m for _, m in logger.points if "val/loss" in m]
    assert val_points[-1]["epoch"] == pytest.approx(1 + 3 / 8)


def test_val_every_skips_validations_but_not_the_last():
    _, _, saves = train(parts(), settings(max_epochs=5, val_every=2))
    assert [step for step, _ in saves] == [16, 32, 40]


def test_a_stop_request_ends_after_the_step_with_a_save():
    stop = StopRequest()
    status, state, saves = train(parts(), settings(log_every=1),
                                 Recorder(stop_at=5, stop=stop), stop)
    assert status == "interrupted" and state.step == 5 and (state.epoch, state.batch) == (0, 5)
    assert saves == [(5, False)]


def test_resuming_from_a_state_continues_where_it_stopped():
    """Stopping after 13 steps and going on from that state equals one uninterrupted run."""
    stop = StopRequest()
    p = parts()
    train(p, settings(log_every=1), Recorder(stop_at=13, stop=stop), stop)
    _, state, _ = train(p, settings(), state=TrainState(step=13, epoch=1, batch=5))
    q = parts()
    train(q, settings())
    assert state.step == 40
    for a, b in zip(p.model.parameters(), q.model.parameters(), strict=True):
        assert torch.equal(a, b)


class NanAfter(nn.Module):
    """Cross-entropy that turns into NaN from a given call on."""

    def __init__(self, bad_from: int) -> None:
        super().__init__()
        self.calls, self.bad_from = 0, bad_from

    def forward(self, out, y):
        self.calls += torch.is_grad_enabled()  # training steps only, not evaluation
        loss = nn.functional.cross_entropy(out, y)
        return loss * float("nan") if self.calls >= self.bad_from else loss


def test_a_non_finite_loss_names_its_step_and_no_bad_state_is_saved():
    saves: list = []
    with pytest.raises(DivergedError, match="at step 11"):
        train(parts(NanAfter(bad_from=11)), settings(log_every=4), saves=saves)
    assert saves == [(8, True)]  # the epoch-1 state; nothing after the bad step


def test_divergence_names_the_first_bad_layer():
    with pytest.raises(DivergedError, match=r"first non-finite: 0 \(output\)"):
        train(parts(lr=1e30), settings(log_every=2, max_epochs=3))


class RecordingHooks:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def start(self, state):
        self.calls.append(("start", state.step))

    def step(self, state):
        self.calls.append(("step", state.step))

    def validated(self, state, metrics):
        assert "accuracy" in metrics
        self.calls.append(("validated", state.step))

    def end(self, state):
        self.calls.append(("end", state.step))


def test_hooks_are_called_at_their_named_points():
    hooks = RecordingHooks()
    train_split, val_split = problem()
    job = loop_job(parts(), ShuffledBatches(train_split, 16, seed=0), val_split,
                   "classification", settings(max_epochs=2))
    fit(job, TrainState(), Recorder(), lambda st, best: None, StopRequest(), hooks=hooks)
    assert hooks.calls[0] == ("start", 0) and hooks.calls[-1] == ("end", 16)
    assert [s for name, s in hooks.calls if name == "step"] == list(range(1, 17))
    assert [s for name, s in hooks.calls if name == "validated"] == [8, 16]
