"""Every option of the training catalogue runs, and behaves as the textbook says."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from dltrain.cli import conf_dir
from dltrain.data.batches import ShuffledBatches
from dltrain.data.spec import Split
from dltrain.log import NullLogger
from dltrain.losses import build_loss
from dltrain.optim import build_optimizer, build_scheduler, warmup_cosine
from dltrain.run import run
from dltrain.training.loop import fit
from dltrain.training.signals import StopRequest
from dltrain.training.state import Parts, Settings, TrainState
from tests.train.jobs import loop_job

CONF = Path(conf_dir())
REGRESSION_LOSSES = {"mse", "mae", "huber", "rel_l2"}
DATA_FOR_REG = {"augment": "glyphs"}  # presets that need images
GENERATIVE_LOSSES = {"wgan_gp": ("task=generation", "model=gan", "trainer.fid_samples=100",
                                 "data.n_train=400")}


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def smoke(make_cfg, tmp_path, *overrides: str) -> dict:
    result = run(make_cfg("trainer=smoke", "logger=none", *overrides), tmp_path)
    assert result.status == "completed", result.summary.get("error")
    return result.summary


@pytest.mark.parametrize("name", options("loss"))
def test_every_loss_runs(make_cfg, tmp_path, name):
    data = "sine" if name in REGRESSION_LOSSES else "moons"
    task = (*GENERATIVE_LOSSES[name], f"trainer.fid_cache={tmp_path}") \
        if name in GENERATIVE_LOSSES else ()  # a GAN's loss trains a GAN
    summary = smoke(make_cfg, tmp_path, f"loss={name}", f"data={data}", *task)
    assert math.isfinite(summary["test"]["loss"])


@pytest.mark.parametrize("name", options("optim"))
def test_every_optimiser_runs(make_cfg, tmp_path, name):
    summary = smoke(make_cfg, tmp_path, f"optim={name}", "data=moons")
    assert summary["test"]["accuracy"] > 0.5


# --- every schedule's logged rate against its definition ---------------------------------------
# The rate after s optimiser steps (as train/lr logs it at step s) of a run of T steps from the
# rate lr, with the option's own conf/sched values `c`; each function is the schedule's
# definition written out, not torch's code. A schedule added to conf/sched/ needs its line here.


def _cosine(first: float, last: float, progress: float) -> float:
    """Half a cosine from `first` (progress 0) to `last` (progress 1)."""
    return last + (first - last) * (1 + math.cos(math.pi * progress)) / 2


def _onecycle(s: int, T: int, lr: float, c: dict) -> float:
    start = lr / c["div_factor"]
    floor = start / c["final_div_factor"]
    peak_at = c["pct_start"] * T - 1  # (torch counts the phases' ends from step 0)
    if s <= peak_at:
        return _cosine(start, lr, s / peak_at)
    return _cosine(lr, floor, (s - peak_at) / (T - 1 - peak_at))


def _warmup_cosine(s: int, T: int, lr: float, c: dict) -> float:
    w = round(0.1 * T) if c["warmup_steps"] is None else c["warmup_steps"]
    if s < w:
        return lr * s / w
    return lr * _cosine(1.0, c["min_fraction"], (s - w) / (T - w))


SCHEDULES: dict[str, Callable[[int, int, float, dict], float]] = {
    "none": lambda s, T, lr, c: lr,
    "cosine": lambda s, T, lr, c: _cosine(lr, c["eta_min"], s / T),
    "exponential": lambda s, T, lr, c: lr * (c["gamma"] or 0.01 ** (1 / T)) ** s,
    "step": lambda s, T, lr, c: lr * c["gamma"] ** (s // (c["step_size"] or T // 3)),
    "warmup_cosine": _warmup_cosine,
    "auto": _warmup_cosine,  # the default: warmup_cosine under a first-order optimiser
    "onecycle": _onecycle,
}


def logged_rates(path: Path) -> dict[int, float]:
    return {r["step"]: r["train/lr"] for r in map(json.loads, (path / "metrics.jsonl").open())
            if "train/lr" in r}


def test_every_schedule_has_its_definition_here():
    # plateau steps on the validation loss: test_plateau_halves_the_rate_after_patience
    assert set(options("sched")) == {*SCHEDULES, "plateau"}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_every_schedule_logs_the_rates_of_its_definition(make_cfg, tmp_path, name):
    """A run of 40 steps logs every step's rate: a schedule that never moves, moves the wrong
    way or at the wrong steps fails here."""
    T, lr = 40, 0.1
    smoke(make_cfg, tmp_path, f"sched={name}", "data=moons", "optim=sgd", f"optim.lr={lr}",
          f"trainer.max_steps={T}", "trainer.max_epochs=2", "trainer.log_every=1")
    c = OmegaConf.to_container(make_cfg(f"sched={name}").sched, resolve=True)
    expected = {s: SCHEDULES[name](s, T, lr, c) for s in range(1, T + 1)}
    assert logged_rates(tmp_path) == pytest.approx(expected, rel=1e-6, abs=1e-12)
    if name != "none":  # (a definition that never moved would let a frozen schedule pass)
        assert expected[T] != pytest.approx(expected[1])


def test_the_schedule_definitions_have_the_textbook_shapes(make_cfg):
    """The definitions above, checked for the shape the lecture draws."""
    T, lr = 40, 0.1

    def rates(name: str) -> list[float]:
        c = OmegaConf.to_container(make_cfg(f"sched={name}").sched, resolve=True)
        return [SCHEDULES[name](s, T, lr, c) for s in range(T + 1)]

    assert rates("none") == [lr] * (T + 1)
    cosine = rates("cosine")
    assert cosine[0] == lr and cosine[T] == pytest.approx(0, abs=1e-12)
    assert all(a > b for a, b in pairwise(cosine))
    step = rates("step")  # a third of the run, then x0.1
    assert step[12] == lr and step[13] == pytest.approx(lr * 0.1) and step[26] == \
        pytest.approx(lr * 0.01)
    assert rates("exponential")[T] == pytest.approx(lr * 0.01)
    warm = rates("warmup_cosine")  # up for 10% of the run, then down to 0
    assert warm[0] == 0 and warm[4] == lr and warm[T] == pytest.approx(0, abs=1e-12)
    assert all(a < b for a, b in pairwise(warm[:5])) and all(a > b for a, b in pairwise(warm[4:]))
    one = rates("onecycle")  # from lr/25 up to lr at 30% of the run, then far below
    peak = one.index(max(one))
    assert one[0] == pytest.approx(lr / 25) and one[peak] == pytest.approx(lr)
    assert peak == 11 and one[T - 1] == pytest.approx(lr / 25 / 1e4)


def test_plateau_halves_the_rate_after_patience(make_cfg, tmp_path):
    """A rate too small to move the weights keeps the validation loss flat: with patience p
    the rate drops by `factor` after every p + 1 validations without improvement (the first
    sets the best). train/lr is logged once an epoch, before that epoch's validation."""
    lr, epochs = 1e-7, 8
    smoke(make_cfg, tmp_path, "sched=plateau", "data=moons", "optim=sgd", f"optim.lr={lr}",
          "trainer.max_steps=null", f"trainer.max_epochs={epochs}", "trainer.log_every=1000")
    c = make_cfg("sched=plateau").sched
    rates = list(logged_rates(tmp_path).values())
    # the rate of epoch e (1, 2, ...) follows validations 1 .. e-1
    expected = [lr * c.factor ** (max(e - 2, 0) // (c.patience + 1)) for e in range(1, epochs + 1)]
    assert rates == pytest.approx(expected, rel=1e-9)
    assert len(set(expected)) == 3  # 8 epochs, patience 2: two drops


@pytest.mark.parametrize("name", options("reg"))
def test_every_regulariser_runs(make_cfg, tmp_path, name):
    smoke(make_cfg, tmp_path, f"reg=[{name}]", f"data={DATA_FOR_REG.get(name, 'moons')}")


def test_regularisers_combine_and_land_where_they_belong(make_cfg):
    cfg = make_cfg("reg=[dropout,l2,early_stopping,label_smoothing,grad_clip,weight_decay]")
    assert cfg.model.dropout == 0.2 and cfg.penalty.l2 == 1e-4
    assert cfg.trainer.early_stopping.patience == 5 and cfg.loss.label_smoothing == 0.1
    assert cfg.trainer.grad_clip.max_norm == 1.0 and cfg.optim.weight_decay == 0.0005


def test_lbfgs_reaches_90_percent_on_moons(make_cfg, tmp_path):
    result = run(make_cfg("optim=lbfgs", "data=moons", "logger=none", "trainer.max_epochs=3"),
                 tmp_path)
    assert result.summary["test"]["accuracy"] >= 0.9


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["optim=lbfgs", "trainer.precision=bf16"], "needs full-precision losses"),
        (["optim=lbfgs", "trainer.accumulate=2"], "cannot accumulate gradients"),
        (["trainer.grad_clip.max_norm=1", "trainer.grad_clip.value=1"], "not both"),
        (["optim=sgd", "+optim.nesterov=true"], "needs optim.momentum > 0"),
    ],
)
def test_impossible_combinations_are_refused(make_cfg, overrides, message):
    from dltrain.config import validate
    from dltrain.errors import ConfigError

    with pytest.raises(ConfigError, match=message):
        validate(make_cfg(*overrides))


def test_bce_uses_one_logit_and_learns_moons(make_cfg, tmp_path):
    result = run(make_cfg("loss=bce", "data=moons", "logger=none"), tmp_path)
    assert result.summary["test"]["accuracy"] >= 0.9
    from dltrain.training.checkpoint import load_checkpoint

    head = load_checkpoint(tmp_path / "checkpoints" / "best.pt")["model"]["head.weight"]
    assert head.shape[0] == 1


def test_a_loss_that_does_not_fit_the_task_is_refused(make_cfg, tmp_path):
    result = run(make_cfg("loss=mse", "data=moons"), tmp_path)
    assert result.exit_code == 2 and "loss=mse does not fit a classification" in \
        result.summary["error"]
    result = run(make_cfg("loss=bce", "data=blobs"), tmp_path)
    assert result.exit_code == 2 and "needs two classes" in result.summary["error"]


def test_label_smoothing_matches_its_formula(make_cfg):
    from dltrain.data.spec import DataSpec

    spec = DataSpec("x", "classification", "vector", (2,), num_classes=5)
    loss = build_loss(make_cfg("reg=[label_smoothing]").loss, spec)
    logits, y = torch.randn(8, 5), torch.randint(0, 5, (8,))
    logp = logits.log_softmax(-1)
    eps = 0.1
    expected = ((1 - eps) * -logp.gather(1, y[:, None]).squeeze(1) - eps * logp.mean(-1)).mean()
    assert loss(logits, y).item() == pytest.approx(expected.item(), rel=1e-5)


# --- schedules against their formulas ---------------------------------------------------------


def lrs_of(make_cfg, sched_overrides: list[str], total: int, lr: float = 0.1) -> list[float]:
    net = nn.Linear(2, 2)
    opt = build_optimizer(make_cfg("optim=sgd", f"optim.lr={lr}").optim, net)
    sched = build_scheduler(make_cfg(*sched_overrides).sched, opt, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_step_schedule(make_cfg):
    lrs = lrs_of(make_cfg, ["sched=step", "sched.step_size=4", "sched.gamma=0.5"], 12)
    assert lrs == pytest.approx([0.1 * 0.5 ** (t // 4) for t in range(12)])
    default = lrs_of(make_cfg, ["sched=step"], 30)  # null step_size: a third of the run
    assert default == pytest.approx([0.1 * 0.1 ** (t // 10) for t in range(30)])


def test_exponential_schedule_reaches_one_percent(make_cfg):
    lrs = lrs_of(make_cfg, ["sched=exponential"], 50)
    gamma = 0.01 ** (1 / 50)
    assert lrs == pytest.approx([0.1 * gamma**t for t in range(50)])


def test_warmup_cosine_rises_then_falls(make_cfg):
    lrs = lrs_of(make_cfg, ["sched=warmup_cosine", "sched.warmup_steps=10"], 50)
    expected = [0.1 * t / 10 if t < 10 else 0.05 * (1 + math.cos(math.pi * (t - 10) / 40))
                for t in range(50)]
    assert lrs == pytest.approx(expected)
    peak = lrs.index(max(lrs))
    assert peak == 10 and all(a < b for a, b in pairwise(lrs[:peak + 1]))
    assert all(a >= b for a, b in pairwise(lrs[peak:]))


def test_warmup_cosine_floor():
    opt = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0)
    sched = warmup_cosine(opt, total_steps=10, warmup_steps=0, min_fraction=0.2)
    for _ in range(10):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.2)


def test_onecycle_starts_low_peaks_at_lr_and_ends_far_below(make_cfg):
    lrs = lrs_of(make_cfg, ["sched=onecycle"], 100)
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert max(lrs) == pytest.approx(0.1, rel=1e-3) and 25 <= lrs.index(max(lrs)) <= 31
    assert lrs[-1] < 1e-4


# --- the loop's catalogue: accumulation, clipping, early stopping, NaN policy ------------------


def line_problem(n: int = 64) -> tuple[Split, Split]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g)
    return Split(x, y), Split(x[:16], y[:16])


def settings(**kw) -> Settings:
    base = dict(max_epochs=2, max_steps=None, log_every=1, val_every=1, precision="32",
                monitor="val/loss", mode="min", eval_batch_size=64)
    return Settings(**{**base, **kw})


def trained(batch: int, accumulate: int, **kw) -> tuple[nn.Module, TrainState]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    parts = Parts(model, model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=0.1), None)
    train, val = line_problem()
    state = TrainState()
    fit(loop_job(parts, ShuffledBatches(train, batch, seed=3), val, "regression",
                 settings(accumulate=accumulate, **kw)),
        state, NullLogger(), lambda s, b: None, StopRequest())
    return model, state


def test_accumulating_k_batches_of_b_equals_one_batch_of_k_times_b():
    big, big_state = trained(batch=32, accumulate=1)
    acc, acc_state = trained(batch=8, accumulate=4)
    assert big_state.step == acc_state.step == 4
    for a, b in zip(big.parameters(), acc.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_gradient_clipping_bounds_the_update():
    """One full-batch SGD step with lr=1 moves the weights by exactly lr * max_norm when the
    gradient is larger than max_norm (it is, many times over, at initialisation here)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    start = [p.detach().clone() for p in model.parameters()]
    parts = Parts(model, model, nn.MSELoss(), torch.optim.SGD(model.parameters(), lr=1.0), None)
    train, val = line_problem()
    fit(loop_job(parts, ShuffledBatches(train, 64, seed=0), val, "regression",
                 settings(max_epochs=1, clip_norm=0.01)),
        TrainState(), NullLogger(), lambda s, b: None, StopRequest())
    step = torch.cat([(p - q).flatten() for p, q in zip(model.parameters(), start, strict=True)])
    assert step.norm().item() == pytest.approx(0.01, rel=1e-4)  # lr * max_norm


def test_early_stopping_ends_an_overfitting_run_and_keeps_the_best(make_cfg, tmp_path):
    cfg = make_cfg("data=sine", "data.n_train=40", "data.noise=0.5", "data.batch_size=8",
                   "model.hidden=[256,256,256]", "optim.lr=0.003", "trainer.max_epochs=400",
                   "reg=[early_stopping]", "trainer.early_stopping.patience=10", "logger=none")
    summary = run(cfg, tmp_path).summary
    assert summary["stopped_early"] and summary["epochs"] < 100
    assert summary["best"]["step"] < summary["steps"]
    from dltrain.run import evaluate_run

    assert evaluate_run(cfg, tmp_path)["test"]["loss"] == pytest.approx(summary["test"]["loss"])


class NanEvery(nn.Module):
    """MSE, except every third training call returns NaN."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, out, y):
        self.calls += torch.is_grad_enabled()
        loss = nn.functional.mse_loss(out, y)
        return loss * float("nan") if self.calls % 3 == 0 else loss


def test_nan_policy_skip_skips_bad_batches_and_counts_them():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
    parts = Parts(model, model, NanEvery(), torch.optim.SGD(model.parameters(), lr=0.1), None)
    train, val = line_problem()
    state = TrainState()
    status = fit(loop_job(parts, ShuffledBatches(train, 8, seed=0), val, "regression",
                          settings(max_epochs=3, nan_policy="skip")),
                 state, NullLogger(), lambda s, b: None, StopRequest())
    assert status == "completed" and state.skipped == 8 and state.step == 24 - 8
    assert all(torch.isfinite(p).all() for p in model.parameters())
