"""Regression metrics in the data's own units: MetricTotals against numpy, computed here
independently (float64, straight from the definitions), for vectors, several outputs, a field,
a stack of members, data-parallel shards, a target scale, and through the run's plumbing."""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import sys

import numpy as np
import pytest
import torch
from torch import nn

from dltrain.data.spec import Data, DataSpec, Split, TargetScale
from dltrain.errors import ConfigError
from dltrain.losses import MAXIMISED, METRICS, MetricTotals, monitor_metric
from dltrain.results import with_baseline
from dltrain.training.checkpoint import checkpoint_meta
from dltrain.training.distributed import Dist
from dltrain.training.loop import evaluate
from dltrain.training.resume import check_statistics, check_target_scale
from dltrain.training.state import Parts

REGRESSION = ("mse", "mae", "rmse", "r2", "rel_l2", "max_error")


def reference(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """The metrics from their definitions, in float64, for (N, ...) arrays in data units; r2
    pooled over outputs (every value of a sample) as sklearn's 'variance_weighted'; rel_l2
    pooled for vectors, and for fields (targets of several axes) each sample's relative error,
    averaged, as operator papers report it."""
    p = pred.reshape(len(pred), -1).astype(np.float64)
    t = truth.reshape(len(truth), -1).astype(np.float64)
    err = p - t
    ss_res = (err ** 2).sum()
    ss_tot = ((t - t.mean(axis=0)) ** 2).sum()
    return {"mse": (err ** 2).mean(), "mae": np.abs(err).mean(),
            "rmse": np.sqrt((err ** 2).mean()), "r2": 1 - ss_res / ss_tot,
            "rel_l2": np.linalg.norm(err) / np.linalg.norm(t) if truth.ndim <= 2 else
            float(np.mean(np.linalg.norm(err, axis=1) / np.linalg.norm(t, axis=1))),
            "max_error": np.abs(err).max()}


def restored(z: torch.Tensor, scale: TargetScale | None) -> np.ndarray:
    """Standardised values in the data's units, computed in float64."""
    z64 = z.double().numpy()
    if scale is None:
        return z64
    return z64 * scale.std.double().numpy() + scale.mean.double().numpy()


def totals_of(outs, ys, scale=None, members=None) -> MetricTotals:
    totals = MetricTotals("regression", members=members, scale=scale)
    for out, y in zip(outs, ys, strict=True):
        loss = (out - y).square().flatten(-y.dim() + (members is not None)).mean(-1)
        totals.update(out, y, loss if members is not None else loss.mean())
    return totals


def check(result: dict[str, float], expected: dict[str, float], rel: float = 1e-6) -> None:
    for key in REGRESSION:
        assert result[key] == pytest.approx(expected[key], rel=rel), key


def batches(t: torch.Tensor, size: int) -> list[torch.Tensor]:
    return list(t.split(size))


def test_regression_reports_its_metrics_in_this_order():
    assert METRICS["regression"] == REGRESSION
    assert "r2" in MAXIMISED and monitor_metric("regression", "val/r2") == ("val/r2", "max")
    assert monitor_metric("regression", "val/max_error") == ("val/max_error", "min")


def test_one_output_without_a_scale_matches_numpy():
    torch.manual_seed(0)
    y = torch.randn(50, 1)
    out = y + 0.3 * torch.randn(50, 1)
    result = totals_of(batches(out, 16), batches(y, 16)).compute()
    check(result, reference(out.numpy(), y.numpy()))
    # the loss stays the training criterion's, the mean of squared errors over every batch
    assert result["loss"] == pytest.approx(nn.functional.mse_loss(out, y).item(), rel=1e-5)


def test_several_outputs_in_data_units_with_a_target_scale():
    torch.manual_seed(1)
    # outputs of very different sizes and offsets: a mean of 1e4 with a std of 0.5 is where
    # sums of raw squares in float32 (Σy² − (Σy)²/n) lose every digit of SS_tot
    scale = TargetScale(torch.tensor([[1e4, -3.0, 0.0]]), torch.tensor([[0.5, 20.0, 1e-3]]))
    z = torch.randn(70, 3) * 0.9 + 0.2  # the split's mean is not the train mean
    zhat = z + torch.randn(70, 3) * torch.tensor([0.1, 0.5, 0.05])
    result = totals_of(batches(zhat, 32), batches(z, 32), scale).compute()
    expected = reference(restored(zhat, scale), restored(z, scale))
    check(result, expected, rel=1e-7)
    assert 0 < expected["r2"] < 1
    # the data's units, not the standardised ones the model was trained in
    assert result["mse"] != pytest.approx(result["loss"], rel=0.1)
    assert result["max_error"] == pytest.approx(
        float(((zhat - z).abs() * scale.std).max()), rel=1e-6)


def test_a_field_target_pools_r2_over_every_value_of_a_sample():
    torch.manual_seed(2)
    # (N, C, H, W) targets standardised per channel: mean and std of shape (1, C, 1, 1)
    scale = TargetScale(torch.tensor([5.0, -100.0]).view(1, 2, 1, 1),
                        torch.tensor([2.0, 30.0]).view(1, 2, 1, 1))
    pattern = torch.linspace(-1, 1, 20).view(1, 1, 4, 5)  # each pixel has its own mean
    z = pattern + 0.5 * torch.randn(23, 2, 4, 5)
    zhat = z + 0.2 * torch.randn(23, 2, 4, 5)
    result = totals_of(batches(zhat, 8), batches(z, 8), scale).compute()
    check(result, reference(restored(zhat, scale), restored(z, scale)))


def test_r2_of_the_split_mean_is_zero_and_of_a_perfect_fit_one():
    y = torch.tensor([[1.0, 10.0], [2.0, 20.0], [3.0, 60.0]])
    mean = y.mean(0, keepdim=True).expand_as(y)
    assert totals_of([mean], [y]).compute()["r2"] == pytest.approx(0.0, abs=1e-12)
    perfect = totals_of([y.clone()], [y]).compute()
    assert perfect["r2"] == 1.0 and perfect["rel_l2"] == 0.0 and perfect["max_error"] == 0.0
    # constant targets: no variance to explain (sklearn's force_finite: 1 if perfect, else 0)
    flat = torch.ones(4, 1)
    assert totals_of([flat], [flat]).compute()["r2"] == 1.0
    assert totals_of([flat + 1], [flat]).compute()["r2"] == 0.0


@pytest.mark.parametrize("per_member_scale", [False, True])
def test_each_member_of_a_stack_gets_its_own_metrics(per_member_scale):
    torch.manual_seed(3)
    members = 3
    if per_member_scale:  # members trained on different data sets, each with its statistics
        scale = TargetScale(torch.tensor([[[0.0, 1.0]], [[50.0, -2.0]], [[7.0, 7.0]]]),
                            torch.tensor([[[1.0, 3.0]], [[0.1, 4.0]], [[9.0, 0.5]]]))
    else:
        scale = TargetScale(torch.tensor([[2.0, -4.0]]), torch.tensor([[3.0, 0.25]]))
    z = torch.randn(members, 40, 2)
    zhat = z + torch.randn(members, 40, 2) * torch.tensor([0.1, 0.4, 0.9]).view(3, 1, 1)
    totals = MetricTotals("regression", members=members, scale=scale)
    for start in range(0, 40, 16):
        out, y = zhat[:, start:start + 16], z[:, start:start + 16]
        totals.update(out, y, (out - y).square().flatten(1).mean(1))
    each = totals.compute_each()
    assert len(each) == members
    for i in range(members):
        one = TargetScale(scale.mean[i] if per_member_scale else scale.mean,
                          scale.std[i] if per_member_scale else scale.std)
        check(each[i], reference(restored(zhat[i], one), restored(z[i], one)))
        # as the member's own run would score it alone
        alone = totals_of(batches(zhat[i], 16), batches(z[i], 16), one).compute()
        check(each[i], alone, rel=1e-9)


def test_shards_summed_and_maxed_give_the_whole_splits_metrics():
    torch.manual_seed(4)
    scale = TargetScale(torch.tensor([[3.0, 300.0]]), torch.tensor([[2.0, 0.01]]))
    z, zhat = torch.randn(60, 2), torch.randn(60, 2)
    zhat[7] += 10.0  # the largest error is on one shard only
    shards = [totals_of(batches(zhat[r::2], 8), batches(z[r::2], 8), scale) for r in (0, 1)]
    other = shards[1]._totals()
    result = shards[0].compute(reduce=lambda t: t + other[1],
                               reduce_max=lambda t: torch.maximum(t, other[3]))
    check(result, reference(restored(zhat, scale), restored(z, scale)))
    with pytest.raises(ValueError, match="reduce_max"):
        shards[0].compute(reduce=lambda t: t + other[1])


def _rank(rank: int, store: str, queue) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    try:
        torch.manual_seed(5)
        x = torch.randn(41, 2)
        y = x @ torch.tensor([[1.0], [-2.0]]) + 0.5
        y[12] += 4.0  # row 12: rank 0's shard alone holds the largest error
        net = nn.Linear(2, 1)
        parts = Parts(net, net, nn.MSELoss(), None, None)
        scale = TargetScale(torch.tensor([[100.0]]), torch.tensor([[5.0]]))
        result = evaluate(parts, Split(x, y), "regression", 8, contextlib.nullcontext(),
                          Dist(rank, 2), scale)
        with torch.no_grad():
            pred = net(x)
        queue.put((rank, result, reference(restored(pred, scale), restored(y, scale))))
    finally:
        dist.destroy_process_group()


@pytest.mark.skipif(sys.platform == "win32", reason="gloo over a file store")
def test_a_data_parallel_evaluation_sums_and_maxes_over_the_ranks(tmp_path):
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, str(tmp_path / "store"), queue))
             for r in (0, 1)]
    for p in procs:
        p.start()
    got = dict((r, (res, ref)) for r, res, ref in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    for rank in (0, 1):  # every rank gets the whole split's metrics
        result, expected = got[rank]
        check(result, expected, rel=1e-5)


def test_evaluate_reports_data_units_with_the_scale_and_standardised_without():
    torch.manual_seed(6)
    x, y = torch.randn(30, 3), torch.randn(30, 2)
    net = nn.Linear(3, 2)
    parts = Parts(net, net, nn.MSELoss(), None, None)
    scale = TargetScale(torch.tensor([[10.0, 20.0]]), torch.tensor([[4.0, 0.5]]))
    with torch.no_grad():
        pred = net(x)
    none = contextlib.nullcontext()
    check(evaluate(parts, Split(x, y), "regression", 7, none, scale=scale),
          reference(restored(pred, scale), restored(y, scale)))
    check(evaluate(parts, Split(x, y), "regression", 7, none),
          reference(pred.numpy(), y.numpy()))


# --- the target statistics with the run, and a baseline beside the metrics


def test_the_checkpoint_carries_the_target_statistics_next_to_the_input_norm():
    scale = TargetScale(torch.tensor([[1.5, -2.0]]), torch.tensor([[0.5, 3.0]]))
    split = Split(torch.zeros(2, 1), torch.zeros(2, 2))

    def data(norm: dict, scale: TargetScale | None, facts: dict) -> Data:
        return Data(split, split, split, DataSpec("t", "regression", "vector", (1,)), norm=norm,
                    target_scale=scale, facts=facts)

    # the reader's decisions travel too (a new table's rows are encoded with them)
    facts = {"features": ["a", "site=x", "site=y"], "categories": {"site": ["x", "y"]}}
    meta = checkpoint_meta({}, {}, data({"mean": [0.1], "std": [2.0]}, scale, facts))
    assert meta["norm"] == {"mean": [0.1], "std": [2.0],
                            "target": {"mean": [[1.5, -2.0]], "std": [[0.5, 3.0]]}}
    assert meta["data"] == facts
    rebuilt = TargetScale.from_dict(meta["norm"]["target"])
    assert torch.equal(rebuilt.mean, scale.mean) and torch.equal(rebuilt.std, scale.std)
    assert "target" not in checkpoint_meta({}, {}, data({"mean": [0.0]}, None, {}))["norm"]
    check_target_scale(meta, TargetScale(scale.mean.clone(), scale.std.clone()))
    check_target_scale({"norm": {}}, None)  # built-in data: nothing to compare
    with pytest.raises(ConfigError, match="standardised with other statistics"):
        check_target_scale(meta, TargetScale(scale.mean + 0.1, scale.std))
    with pytest.raises(ConfigError, match=r"\(none\)"):
        check_target_scale(meta, None)
    # the inputs' normalisation is the run's too: a changed training file moves it
    check_statistics(meta, data({"mean": [0.1], "std": [2.0]}, scale, facts))
    with pytest.raises(ConfigError, match=r"inputs were normalised with other statistics "
                                          r"\(mean \[0.1\], std \[2.0\]\) than the data this "
                                          r"config builds \(mean \[0.3\]"):
        check_statistics(meta, data({"mean": [0.3], "std": [2.0]}, scale, facts))
    with pytest.raises(ConfigError, match="regression targets were standardised"):
        check_statistics(meta, data({"mean": [0.1], "std": [2.0]}, None, facts))


def test_the_baseline_of_a_split_goes_beside_its_metrics():
    facts = {"baseline": {"val": {"naive_rmse": 0.7}, "test": {"naive_rmse": 0.9}}}
    assert with_baseline({"rmse": 0.5}, facts, "test") == {"rmse": 0.5, "naive_rmse": 0.9}
    assert with_baseline({"rmse": 0.5}, facts, "val") == {"rmse": 0.5, "naive_rmse": 0.7}
    assert with_baseline({"rmse": 0.5}, {}, "test") == {"rmse": 0.5}


def _scaled_sine(facts: dict, offset: float = 1000.0):
    """build_data for data=sine in other units (y·40 + offset), standardised with the train
    split's statistics as a file reader does, a TargetScale and facts on the Data: what a
    run sees of a user's own regression data."""
    from dltrain.data import build_data

    def build(cfg, device="cpu") -> Data:
        data = build_data(cfg, device)
        splits = (data.train, data.val, data.test)
        for s in splits:
            s.y = s.y * 40.0 + offset
        mean, std = data.train.y.mean(0, keepdim=True), data.train.y.std(0, keepdim=True)
        for s in splits:
            s.y = (s.y - mean) / std
        data.target_scale, data.facts = TargetScale(mean.cpu(), std.cpu()), facts
        return data

    return build


def test_a_run_reports_data_units_saves_the_scale_and_eval_reproduces_it(
        make_cfg, tmp_path, monkeypatch):
    import dltrain.job as job_module
    from dltrain.evaluate import evaluate_run
    from dltrain.run import run
    from dltrain.training.checkpoint import load_checkpoint

    facts = {"baseline": {"val": {"naive_rmse": 12.5}, "test": {"naive_rmse": 13.5}}}
    monkeypatch.setattr(job_module, "build_data", _scaled_sine(facts))
    cfg = make_cfg("data=sine", "trainer=smoke", "trainer.max_epochs=2", "logger=none",
                   "trainer.monitor=val/r2")
    result = run(cfg, tmp_path / "run")
    assert result.status == "completed", result.summary.get("error")
    test = result.summary["test"]
    assert set(test) == {"loss", *REGRESSION, "naive_rmse"} and test["naive_rmse"] == 13.5
    assert result.summary["val"]["naive_rmse"] == 12.5
    assert result.summary["best"]["mode"] == "max"
    # data units: the errors are std (about 40 × 0.7) times the standardised ones; the loss
    # is the criterion's, on standardised targets
    std = float(TargetScale.from_dict(
        load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")["norm"]["target"]).std)
    assert test["mse"] == pytest.approx(test["loss"] * std ** 2, rel=1e-4)
    payload = load_checkpoint(tmp_path / "run" / "checkpoints" / "best.pt")
    saved = TargetScale.from_dict(payload["norm"]["target"])
    assert saved.mean.item() == pytest.approx(1000.0, abs=1.0)
    # dltrain eval rebuilds the data, finds the same scale, and scores what the run scored
    again = evaluate_run(cfg, tmp_path / "run")
    for key in (*REGRESSION, "naive_rmse"):
        assert again["test"][key] == pytest.approx(test[key], rel=1e-6), key
    assert again["val"]["naive_rmse"] == 12.5
    written = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert written["test"]["r2"] == pytest.approx(test["r2"])
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    tested = next(r for r in logged if "test/rmse" in r)  # what TensorBoard is given too
    assert tested["test/naive_rmse"] == 13.5 and tested["test/r2"] == pytest.approx(test["r2"])
    assert any("val/r2" in r and "val/max_error" in r for r in logged)
    # a resume rebuilds the same scale and goes on reporting in the data's units
    more = make_cfg("data=sine", "trainer=smoke", "trainer.max_steps=30", "logger=none",
                    "trainer.monitor=val/r2")
    resumed = run(more, tmp_path / "run", resume=True)
    assert resumed.status == "completed", resumed.summary.get("error")
    assert resumed.summary["steps"] == 30 and resumed.summary["test"]["naive_rmse"] == 13.5
    assert resumed.summary["test"]["mse"] == pytest.approx(
        resumed.summary["test"]["loss"] * std ** 2, rel=1e-4)
    # data whose training targets changed (other statistics) is refused, before training
    monkeypatch.setattr(job_module, "build_data", _scaled_sine(facts, offset=0.0))
    refused = run(make_cfg("data=sine", "trainer=smoke", "trainer.max_steps=40",
                           "logger=none", "trainer.monitor=val/r2"),
                  tmp_path / "run", resume=True)
    assert refused.exit_code == 2
    assert "standardised with other statistics" in refused.summary["error"]
    with pytest.raises(ConfigError, match="standardised with other statistics"):
        evaluate_run(cfg, tmp_path / "run")


def test_sine_reports_every_regression_metric_and_monitors_r2(make_cfg, tmp_path):
    from dltrain.run import run

    result = run(make_cfg("data=sine", "trainer=smoke", "logger=none",
                          "trainer.monitor=val/r2"), tmp_path)
    assert result.status == "completed", result.summary.get("error")
    test = result.summary["test"]
    assert set(test) == {"loss", *REGRESSION}
    # no target scale on a built-in set: the data's units are the model's, mse is the loss
    assert test["mse"] == pytest.approx(test["loss"], rel=1e-5)
    assert test["rmse"] == pytest.approx(test["mse"] ** 0.5)
    assert result.summary["best"] == {**result.summary["best"], "metric": "val/r2",
                                      "mode": "max"}
    assert result.summary["objective"] == pytest.approx(result.summary["val"]["r2"])


def test_a_stack_of_members_on_different_data_reports_as_each_run_alone(
        make_cfg, tmp_path, monkeypatch):
    import dltrain.job as job_module
    from dltrain.run import run
    from dltrain.vectorised.train import train_stack

    facts = {"baseline": {"val": {"naive_rmse": 2.0}, "test": {"naive_rmse": 3.0}}}
    build = _scaled_sine(facts)
    monkeypatch.setattr(job_module, "build_data", build)  # a stack's members read it there too
    shared = ("data=sine", "data.n_train=200", "data.n_test=100", "trainer.device=cpu",
              "trainer.max_epochs=2", "logger=none", "trainer.monitor=val/rmse",
              "model.hidden=[16]")
    # other data seeds: other data sets, each standardised with its own statistics
    cfgs = [make_cfg(*shared, "trainer.seed=0", "data.seed=0"),
            make_cfg(*shared, "trainer.seed=1", "data.seed=5", "optim.lr=0.003")]
    stacked = train_stack(cfgs, [tmp_path / f"stack{i}" for i in range(2)])
    means = []
    for i, (cfg, member) in enumerate(zip(cfgs, stacked, strict=True)):
        alone = run(cfg, tmp_path / f"alone{i}")
        assert member.status == alone.status == "completed"
        for split in ("val", "test"):
            assert set(member.summary[split]) == {"loss", *REGRESSION, "naive_rmse"}
            for key, value in alone.summary[split].items():
                assert member.summary[split][key] == pytest.approx(value, rel=1e-4), key
        target = load_target(tmp_path / f"stack{i}")
        assert target == load_target(tmp_path / f"alone{i}")
        means.append(target["mean"])
    assert means[0] != means[1]  # the two members were scored with their own statistics


def load_target(run_dir) -> dict:
    from dltrain.training.checkpoint import load_checkpoint

    return load_checkpoint(run_dir / "checkpoints" / "best.pt")["norm"]["target"]
