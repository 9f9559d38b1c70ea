"""Physics-informed training end to end: the poisson problem learnt to a small error, exact
resume with resampled points, an inverse problem's coefficient moving toward the truth, the
terms and the switch to L-BFGS logged, and bad configs refused before training."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dltrain.run import run
from dltrain.training.checkpoint import load_checkpoint
from tests.conftest import run_cli, run_cli_batch
from tests.train.test_resume import assert_resumes_exactly


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_poisson_learns_to_small_error_from_the_command_line(tmp_path):
    # Adam for 300 steps, then L-BFGS: the field within 1% of sin(pi x) (measured: 2e-5)
    out = run_cli("pde=poisson1d", "optim.switch_at=300", "trainer.max_epochs=320",
                  "probe=[field]", "probe.field.every=1000", f"hydra.run.dir={tmp_path / 'run'}",
                  "logger=[]", cwd=tmp_path, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["task"] == "pinn" and summary["status"] == "completed"
    assert summary["best"]["metric"] == "val/rel_l2"
    assert summary["test"]["rel_l2"] < 1e-2
    assert summary["pde"]["equation"] == "poisson1d"
    assert summary["pde"]["lbfgs"]["switch_at"] == 300
    field = np.load(tmp_path / "run" / "field.npz")
    assert field["prediction"].shape == field["reference"].shape == (1000,)
    assert np.abs(field["error"]).max() < 0.05
    assert field["residual"].mean() < 1.0  # |u'' + pi^2 sin(pi x)|, ~pi^2 at the start
    assert (tmp_path / "run" / "field.png").stat().st_size > 1000


def test_field_probe_draws_a_2d_solution_with_its_slices(make_cfg, tmp_path):
    cfg = make_cfg("pde=heat1d", "pde.points.domain=50", "pde.points.boundary=10",
                   "pde.points.initial=10", "pde.eval.x=12", "pde.eval.t=7", "optim=adam",
                   "trainer.max_epochs=4", "trainer.device=cpu", "probe=[field]",
                   "probe.field.samples=2", "logger=[]")
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed", result.summary.get("error")
    field = np.load(tmp_path / "run" / "field.npz")
    assert field["x"].shape == (12,) and field["t"].shape == (7,)
    assert field["shape"].tolist() == [12, 7]
    ref = field["reference"].reshape(12, 7)
    x, t = np.meshgrid(field["x"], field["t"], indexing="ij")
    np.testing.assert_allclose(ref, np.exp(-0.4 * np.pi**2 * t) * np.sin(np.pi * x), atol=1e-6)
    np.testing.assert_allclose(field["error"], field["prediction"] - field["reference"])
    assert (field["residual"] >= 0).all()


def test_terms_coefficients_and_the_switch_are_logged(make_cfg, tmp_path):
    cfg = make_cfg("pde=burgers1d", "pde.learn=[nu]", "pde.observations=100", "pde.noise=0.01",
                   "pde.points.domain=100", "pde.points.boundary=10", "pde.points.initial=10",
                   "pde.eval.x=32", "pde.eval.t=8", "optim.switch_at=20", "optim.lbfgs.max_iter=3",
                   "optim.lbfgs.max_eval=4", "trainer.max_epochs=24", "trainer.log_every=4",
                   "trainer.val_every=12", "trainer.device=cpu", "logger=[]")
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed", result.summary.get("error")
    rows = [r for r in metrics(tmp_path / "run") if "train/loss/residual" in r]
    assert [r["step"] for r in rows] == [4, 8, 12, 16, 20, 24]
    for r in rows:
        for term in ("residual", "boundary", "initial", "data"):
            assert r[f"train/loss/{term}"] > 0
        assert r["pde/nu"] > 0
    assert [r["optim/lbfgs"] for r in rows] == [0, 0, 0, 0, 0, 1]  # step 21 on: L-BFGS
    learned = result.summary["pde"]["learned"]["nu"]
    assert learned["guess"] == 0.01 and learned["true"] == pytest.approx(0.01 / torch.pi)
    assert learned["value"] != 0.01  # it moved


def test_inverse_problem_moves_the_coefficient_toward_the_truth(make_cfg, tmp_path):
    # heat1d's alpha = 0.4 from a first guess of 1.0 and 200 noisy samples, Adam alone
    cfg = make_cfg("pde=heat1d", "pde.learn=[alpha]", "pde.observations=200", "pde.noise=0.01",
                   "pde.points.domain=200", "pde.points.boundary=40", "pde.points.initial=40",
                   "pde.eval.x=16", "pde.eval.t=16", "optim=adam", "optim.lr=0.01", "sched=none",
                   "trainer.max_epochs=300", "trainer.val_every=300", "trainer.device=cpu",
                   "logger=[]")
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed", result.summary.get("error")
    learned = result.summary["pde"]["learned"]["alpha"]
    assert abs(learned["value"] - 0.4) < 0.5 * abs(1.0 - 0.4)  # more than half the way
    assert learned["rel_error"] == pytest.approx(abs(learned["value"] - 0.4) / 0.4)
    weights = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")["model"]
    assert "pde.log_factor.alpha" in weights


def test_resume_is_exact_with_resampled_points(make_cfg, tmp_path):
    cfg = make_cfg("pde=burgers1d", "pde.points.domain=100", "pde.points.boundary=10",
                   "pde.points.initial=10", "pde.resample_every=3", "pde.sampling=sobol",
                   "pde.lbfgs_resample_every=2",  # Adam's draws, then L-BFGS's
                   "pde.eval.x=16", "pde.eval.t=8", "optim.lbfgs.max_iter=3",
                   "optim.lbfgs.max_eval=4", "optim.switch_at=12", "trainer.max_epochs=18",
                   "trainer.val_every=6",
                   "trainer.log_every=3", "trainer.device=cpu", "logger=[]")
    assert_resumes_exactly(cfg, tmp_path, mid_epoch=False)


BAD = [
    (["pde=wave9d"], "pde=wave9d: there is no such option in group pde"),
    (["task=pinn"], "task=pinn needs the equation to learn"),
    (["pde=heat1d", "pde.learn=[nu]", "pde.observations=10"],
     "pde=heat1d has no coefficient 'nu'"),
    (["pde=poisson1d", "pde.points.domain=0"], "pde.points.domain=0"),
    (["pde=poisson1d", "loss=mse"], "loss=mse is not used by task=pinn"),
    (["pde=poisson1d", "data.batch_size=8"], "data.batch_size=8 is not used by task=pinn"),
    (["pde=poisson1d", "pde.sampling=grid"], "pde.sampling=grid"),
    (["pde=burgers1d", "optim=adam", "pde.lbfgs_resample_every=10"],
     "pde.lbfgs_resample_every=10 acts once L-BFGS steps, but optim=adam takes no L-BFGS step"),
]


@pytest.fixture(scope="module")
def refusals(tmp_path_factory):
    """Each case of BAD, one `dltrain` command each, in one process."""
    tmp_path = tmp_path_factory.mktemp("bad_pinn")
    commands = [[*overrides, "trainer=smoke", f"hydra.run.dir={tmp_path / str(i)}"]
                for i, (overrides, _) in enumerate(BAD)]
    return tmp_path, run_cli_batch(commands, cwd=tmp_path, timeout=120)


@pytest.mark.parametrize("case", range(len(BAD)), ids=[words for _, words in BAD])
def test_bad_configs_are_one_sentence_and_exit_2(refusals, case):
    tmp_path, procs = refusals
    out, words = procs[case], BAD[case][1]
    assert out.returncode == 2, out.stderr[-1500:]
    assert words in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / str(case) / "checkpoints").exists()
