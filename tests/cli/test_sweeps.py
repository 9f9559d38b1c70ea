"""Sweeps through the real `dltrain` command: the report at the end, HParams as TensorBoard
reads them, a parallel launcher with a failing job, an Optuna search that continues."""

from __future__ import annotations

import csv
import json
import math

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def hparams_table(logdir):
    """The HParams tab's data, computed by TensorBoard's own HParams backend: the experiment
    (hyperparameter and metric columns) and the session groups with their metric values."""
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import api_pb2, backend_context, list_session_groups

    mux = plugin_event_multiplexer.EventMultiplexer()
    mux.AddRunsFromDirectory(str(logdir))
    mux.Reload()
    provider = data_provider.MultiplexerDataProvider(mux, str(logdir))
    backend = backend_context.Context(base_plugin.TBContext(
        logdir=str(logdir), data_provider=provider, multiplexer=mux))
    request_context = context.RequestContext()
    experiment = backend.experiment_from_metadata(
        request_context, "", True, backend.hparams_metadata(request_context, ""),
        backend.hparams_from_data_provider(request_context, "", None))
    request = api_pb2.ListSessionGroupsRequest(
        start_index=0, slice_size=100, aggregation_type=api_pb2.AGGREGATION_AVG,
        allowed_statuses=[api_pb2.STATUS_UNKNOWN, api_pb2.STATUS_SUCCESS,
                          api_pb2.STATUS_FAILURE, api_pb2.STATUS_RUNNING])
    for info in experiment.hparam_infos:
        request.col_params.add(hparam=info.name, exclude_missing_values=False)
    for info in experiment.metric_infos:
        request.col_params.add(metric=info.name, exclude_missing_values=False)
    groups = list_session_groups.Handler(request_context, backend, "", request).run()
    return experiment, groups.session_groups


def table_lines(stdout: str) -> list[str]:
    """The report's table as printed: from its title to its caption."""
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line.strip().startswith("sweep "))
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("└"))
    return lines[start:end + 1]


def test_a_sweep_ends_with_its_report_and_seeds_become_error_bars(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "data=moons", "optim.lr=0.001,0.01", "trainer.seed=0,1", "trainer=smoke",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr

    jobs = sorted(p.name for p in sweep.iterdir() if (p / ".hydra").is_dir())
    assert jobs == [f"{i}_data=moons,optim.lr={lr},trainer.seed={seed},trainer=smoke"
                    for i, (lr, seed) in enumerate([(0.001, 0), (0.001, 1), (0.01, 0),
                                                    (0.01, 1)])]
    summaries = {name: json.loads((sweep / name / "summary.json").read_text()) for name in jobs}

    rows = list(csv.DictReader((sweep / "report.csv").open()))
    assert len(rows) == 2 and {r["optim.lr"] for r in rows} == {"0.001", "0.01"}
    for row in rows:
        mine = [s["objective"] for name, s in summaries.items()
                if f"optim.lr={row['optim.lr']}," in name]
        mean = sum(mine) / 2
        assert float(row["objective_mean"]) == pytest.approx(mean)
        assert float(row["objective_std"]) == pytest.approx(abs(mine[0] - mine[1]) / math.sqrt(2))
        assert row["n"] == "2" and row["status"] == "completed"
    assert "mean ± std over trainer.seed" in (sweep / "report.md").read_text()
    assert (sweep / "plots" / "objective_vs_optim.lr.png").is_file()
    assert (sweep / "best.yaml").is_file() and list((sweep / "tb").glob("events.out.*"))

    printed = table_lines(proc.stdout)
    assert "val/accuracy ↑" in printed[2] and sum("±" in line for line in printed) == 2

    # the same table again, from the files alone
    again = run_cli("report", str(sweep), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert table_lines(again.stdout) == printed

    # HParams, as TensorBoard's own backend builds its table for this sweep
    experiment, groups = hparams_table(sweep)
    metrics = {m.name.tag for m in experiment.metric_infos}
    assert {"test/accuracy", "test/loss", "val/accuracy", "val/loss"} <= metrics
    assert {"optim.lr", "trainer.seed"} <= {h.name for h in experiment.hparam_infos if h.differs}
    assert len(groups) == 2  # the seeds of one learning rate are one session group
    for group in groups:
        assert len(group.sessions) == 2
        values = {m.name.tag: m.value for m in group.metric_values}
        assert set(values) == metrics  # no empty column
        lr = group.hparams["optim.lr"].number_value
        tests = [s["test"]["accuracy"] for n, s in summaries.items() if f"optim.lr={lr}," in n]
        assert values["test/accuracy"] == pytest.approx(sum(tests) / 2)


def test_a_parallel_sweep_reports_its_failure_and_exits_non_zero(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    from joblib import cpu_count

    sweep = tmp_path / "sweep"
    # val_fraction 0.0001 leaves no validation sample: that job fails on its data
    proc = run_cli("-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "data=moons",
                   "trainer=smoke", "data.val_fraction=0.1,0.0001", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the codes are in the workers
    ok, bad = (sweep / "0_data.val_fraction=0.1,data=moons,trainer=smoke",
               sweep / "1_data.val_fraction=0.0001,data=moons,trainer=smoke")
    good = json.loads((ok / "summary.json").read_text())
    assert good["status"] == "completed"
    assert json.loads((bad / "summary.json").read_text())["status"] == "failed"
    # joblib gives each worker its share of the cores: no oversubscription
    assert good["env"]["threads"] == max(1, cpu_count() // 2)
    assert "failed: 1_data.val_fraction=0.0001" in proc.stdout
    assert "## Failures (1 of 2 runs)" in (sweep / "report.md").read_text()


def test_an_optuna_search_records_the_best_and_a_study_continues(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    import optuna
    import yaml

    first = tmp_path / "first"
    # regression: the objective (val/loss) is minimised, the sweeper maximises
    proc = run_cli("hparams_search=optuna", "hydra.sweeper.n_trials=3", "trainer=smoke",
                   "data=sine", "hydra.sweeper.sampler.seed=0", f"hydra.sweep.dir={first}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    jobs = sorted(p for p in first.iterdir() if (p / "summary.json").is_file())
    assert len(jobs) == 3 and not any("hparams_search" in p.name for p in jobs)
    assert len(list(csv.DictReader((first / "report.csv").open()))) == 3

    storage = f"sqlite:///{first}/optuna.db"
    study = optuna.load_study(study_name="dltrain", storage=storage)
    objectives = sorted(json.loads((p / "summary.json").read_text())["objective"] for p in jobs)
    assert sorted(-t.value for t in study.trials) == pytest.approx(objectives)

    best = yaml.safe_load((first / "best.yaml").read_text())
    assert best["metric"] == "val/loss" and best["mode"] == "min"
    assert best["mean"] == pytest.approx(objectives[0])
    # the swept keys: the learning rate always differs; width or depth only if drawn so
    assert "optim.lr" in best["params"]
    assert set(best["params"]) <= {"optim.lr", "model.width", "model.depth"}
    assert "hparams_search" not in best["command"]
    results = yaml.safe_load((first / "optimization_results.yaml").read_text())
    assert results["best_value"] == pytest.approx(-objectives[0])

    again = run_cli("hparams_search=optuna", "hydra.sweeper.n_trials=1", "trainer=smoke",
                    "data=sine", f"hydra.sweep.dir={tmp_path / 'second'}",
                    f"hydra.sweeper.storage={storage}", cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(optuna.load_study(study_name="dltrain", storage=storage).trials) == 4
