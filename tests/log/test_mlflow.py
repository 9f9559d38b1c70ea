"""logger as a list (logger=[tensorboard,mlflow], logger=[]) and the MLflow round trip: runs
logged to a real `mlflow server` on 127.0.0.1 (one for the module) and read back with
MlflowClient, next to the run's own files."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from dltrain.choices import chosen_loggers
from dltrain.config import validate, written
from dltrain.errors import ConfigError
from dltrain.hparams import flat_hparams
from dltrain.run import run
from tests.conftest import run_cli
from tests.train.test_resume import StopAfterSteps

SMOKE = ("data=moons", "model.hidden=[8]", "trainer=smoke")  # 20 steps, logged every 5
BOTH = "logger=[tensorboard,mlflow]"


# -- the logger group as a list ---------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "expected"), [
    ((), {"tensorboard": {"flush_secs": 10}}),  # the default
    (("logger=tensorboard",), {"tensorboard": {"flush_secs": 10}}),  # one option, as before
    (("logger=[]",), {}),
    (("logger=none",), {}),
    ((BOTH, "logger.mlflow.experiment=study"),
     {"tensorboard": {"flush_secs": 10}, "mlflow": {"experiment": "study", "flush_secs": 10}}),
])
def test_the_logger_group_is_a_list(make_cfg, overrides, expected):
    cfg = make_cfg(*overrides)
    validate(cfg)
    assert chosen_loggers(OmegaConf.to_container(cfg)) == expected


def test_a_run_directory_of_the_single_choice_reads_as_that_logger():
    assert chosen_loggers({"logger": {"name": "tensorboard"}}) == {"tensorboard": {}}
    assert chosen_loggers({"logger": {"name": "none"}}) == {}


@pytest.mark.parametrize(("override", "sentence"), [
    ("+logger.tensorbord.flush_secs=1", "logger.tensorbord is not a logger; did you mean "
                                        "tensorboard?"),
    ("+logger.mlflow.experimnt=x", "logger.mlflow.experimnt is not a key of logger mlflow; "
                                   "did you mean logger.mlflow.experiment?"),
    ("logger.mlflow.flush_secs=-1", "logger.mlflow.flush_secs=-1 must be a number >= 0."),
])
def test_unknown_loggers_and_keys_are_refused(make_cfg, override, sentence):
    with pytest.raises(ConfigError) as err:
        validate(make_cfg(BOTH, override))
    assert str(err.value) == sentence


def test_logger_mlflow_without_mlflow_installed_is_one_sentence_exit_2(tmp_path):
    hide = tmp_path / "hide"  # a Python where `import mlflow` finds nothing
    hide.mkdir()
    (hide / "sitecustomize.py").write_text("import sys\nsys.modules['mlflow'] = None\n")
    proc = run_cli(*SMOKE, BOTH, cwd=tmp_path, env={"PYTHONPATH": str(hide)})
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("dltrain: logger=[mlflow] needs MLflow, which is not "
                                   "installed: pip install 'dltrain[mlflow]'.")
    assert not (tmp_path / "outputs").exists()


def test_no_loggers_still_writes_the_runs_own_files(make_cfg, tmp_path):
    result = run(make_cfg(*SMOKE, "logger=[]"), tmp_path)
    assert result.status == "completed"
    assert not (tmp_path / "tb").exists() and not (tmp_path / "mlflow.json").exists()
    steps = [json.loads(line)["step"] for line in
             (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps and steps[-1] == result.summary["steps"] == 20


# -- MLflow ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> str:
    """A real MLflow tracking server (sqlite store, proxied artifacts), its URI."""
    pytest.importorskip("mlflow", reason="the mlflow extra: pip install 'dltrain[mlflow]'")
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job workers
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed below)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--artifacts-destination", str(root / "artifacts")],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240  # imports and the store's migrations, on 2 busy cores
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("mlflow server did not start:\n"
                            + (root / "server.log").read_text()[-3000:])
            time.sleep(0.5)
        yield uri
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server's own session: it and its workers
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _run_id(run_dir: Path) -> str:
    return json.loads((run_dir / "mlflow.json").read_text())["run_id"]


def _check_run(client, run_dir: Path) -> None:
    """The MLflow run of `run_dir` holds what the directory holds: the flat config as params,
    metrics.jsonl's points, summary.json (and curves.png, the config) as artifacts."""
    run_id = _run_id(run_dir)
    got = client.get_run(run_id)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert got.info.status == "FINISHED" and got.data.tags["dltrain.status"] == "completed"
    assert got.data.tags["dltrain.run_dir"] == str(run_dir.resolve())
    config = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    assert got.data.params == {k: written(v) for k, v in flat_hparams(config).items()}
    points = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    for tag in ("train/loss", "val/loss", "test/accuracy"):
        want = [(p["step"], p[tag]) for p in points if tag in p]
        history = sorted(client.get_metric_history(run_id, tag),
                         key=lambda m: (m.step, m.timestamp))
        assert want and [m.step for m in history] == [s for s, _ in want]
        assert [m.value for m in history] == pytest.approx([v for _, v in want], rel=1e-12)
    assert summary["test"]["accuracy"] == pytest.approx(got.data.metrics["test/accuracy"])
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert artifacts == {"summary.json", "config.yaml", "curves.png"}
    copy = client.download_artifacts(run_id, "summary.json", str(run_dir.parent))
    assert json.loads(Path(copy).read_text()) == summary


def test_a_sweep_is_a_parent_run_with_every_job_a_child(server, tmp_path):
    """Two jobs of a vectorised stack (adam, seeds 0 and 1) and two that run alone (lbfgs)."""
    from mlflow.tracking import MlflowClient

    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "hydra/launcher=vectorised", *SMOKE, "data.n_train=300",
                   "trainer.seed=0,1",
                   "optim=adam,lbfgs", BOTH, f"hydra.sweep.dir={sweep}", cwd=tmp_path,
                   env={"MLFLOW_TRACKING_URI": server})
    assert proc.returncode == 0, proc.stderr
    client = MlflowClient(server)
    parent = client.get_run(_run_id(sweep))
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["dltrain.sweep_dir"] == str(sweep.resolve())
    assert parent.data.tags["dltrain.status"] == "4 of 4 completed"
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(c.info.run_id for c in children) == sorted(_run_id(j) for j in jobs)
    assert len(jobs) == 4 and (jobs[0] / "tb").is_dir()
    for job in jobs:
        _check_run(client, job)


def test_how_a_run_ended_is_its_mlflow_status_and_a_resume_continues_it(server, make_cfg,
                                                                       tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "dltrain-tests")
    client = MlflowClient(server)
    diverged = run(make_cfg(*SMOKE, "optim=sgd", "optim.lr=1e12", BOTH), tmp_path / "diverged")
    # stopped mid-training (a stop before training ends the run before its loggers exist)
    interrupted = run(make_cfg(*SMOKE, BOTH), tmp_path / "interrupted", stop=StopAfterSteps(3))
    assert (diverged.status, interrupted.status) == ("diverged", "interrupted")
    for name, status in (("diverged", "FAILED"), ("interrupted", "KILLED")):
        got = client.get_run(_run_id(tmp_path / name))
        assert (got.info.status, got.data.tags["dltrain.status"]) == (status, name)
        assert client.get_experiment(got.info.experiment_id).name == "dltrain-tests"

    run(make_cfg(*SMOKE, BOTH, "trainer.max_steps=10"), tmp_path / "resumed")
    first = _run_id(tmp_path / "resumed")
    assert client.get_run(first).info.status == "FINISHED"
    more = run(make_cfg(*SMOKE, BOTH, "trainer.max_steps=20"), tmp_path / "resumed",
               resume=True)
    assert more.status == "completed" and _run_id(tmp_path / "resumed") == first
    got = client.get_run(first)
    assert got.info.status == "FINISHED"
    assert got.data.params["trainer.max_steps"] == "10"  # MLflow keeps a param's first value
    assert [m.step for m in client.get_metric_history(first, "train/loss")] == [5, 10, 15, 20]


def test_without_a_tracking_uri_runs_go_to_mlflows_own_store_where_dltrain_runs(
        make_cfg, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)
    result = run(make_cfg(*SMOKE, BOTH), tmp_path / "run")
    assert result.status == "completed" and (tmp_path / "run" / "tb").is_dir()
    # MLflow 3's default: ./mlflow.db, artifacts under ./mlruns (what `mlflow ui` there opens)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    got = client.get_run(_run_id(tmp_path / "run"))
    assert got.info.status == "FINISHED"
    assert Path(got.info.artifact_uri.removeprefix("file://")).is_relative_to(
        tmp_path / "mlruns")
    assert (Path(got.info.artifact_uri.removeprefix("file://")) / "summary.json").is_file()
