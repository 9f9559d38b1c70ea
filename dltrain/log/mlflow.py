"""MLflow: a run as an MLflow run, a sweep as a parent run with its jobs as children
(logger=[tensorboard,mlflow]; pip install 'dltrain[mlflow]').

Where: $MLFLOW_TRACKING_URI, else MLflow's own default, resolved in the directory where
dltrain runs (conf/train.yaml keeps hydra.job.chdir false): MLflow 3 keeps runs in ./mlflow.db
and their artifacts in ./mlruns, or in an older ./mlruns file store that already holds runs,
so that `mlflow ui` started there shows them. $MLFLOW_EXPERIMENT_NAME (or logger.mlflow.
experiment) chooses the experiment, as for any MLflow program.

What: the flat config (dltrain.hparams.flat_hparams) as params, at the start; the metrics at
the points TensorBoard gets them, sent in batches every `flush_secs` (one HTTP request per
batch, not per point: a vectorised stack logs for 64 runs at once); at the end summary.json,
curves.png and the config as artifacts, and how the run ended: FINISHED, FAILED or KILLED,
with dltrain's own word (diverged is FAILED to MLflow) as the tag dltrain.status.

Which run: RUN_DIR/mlflow.json names it, so that `dltrain resume` continues the same MLflow
run, as it continues the same TensorBoard run. SWEEP_DIR/mlflow.json names a sweep's parent
run, made by `SweepParent` (a Hydra callback that conf/logger/mlflow.yaml adds) in the process
that launches the jobs, before the first one starts: each job, whether in that process, a
joblib worker, on a SLURM node or a member of a vectorised stack, finds it beside its own
directory, and no two jobs race to make it. The parent also carries the tag dltrain.sweep_dir.

MLflow is imported here only, when a run asks for it (its import takes seconds).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from dltrain.choices import chosen_loggers
from dltrain.config import written
from dltrain.errors import ConfigError
from dltrain.hparams import flat_hparams
from dltrain.io import write_json
from dltrain.log import NullLogger

log = logging.getLogger("dltrain")

MARKER = "mlflow.json"  # in a run's directory: its MLflow run; in a sweep's: the parent run
SWEEP_TAG = "dltrain.sweep_dir"
STATUS_TAG = "dltrain.status"
# How a run ended (summary.json's status), in MLflow's words.
RUN_STATUS = {"completed": "FINISHED", "failed": "FAILED", "diverged": "FAILED",
              "interrupted": "KILLED"}
# The files of a run that go with it as artifacts, where they exist at its end.
ARTIFACTS = ("summary.json", "curves.png", ".hydra/config.yaml")
DEFAULT_EXPERIMENT = "0"  # MLflow's Default experiment


def _client() -> tuple[Any, str]:
    """An MlflowClient and the tracking URI it talks to (the environment's, else MLflow's
    default, made absolute against the current directory)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = mlflow.get_tracking_uri()
    return MlflowClient(uri), uri


def _marker(path: Path, uri: str) -> dict[str, str] | None:
    """What an mlflow.json says, if it is there and names a run of this tracking URI."""
    try:
        known = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return known if isinstance(known, dict) and known.get("tracking_uri") == uri else None


def experiment_id(client: Any, name: str | None) -> str:
    """The id of experiment `name` (made if new); None: $MLFLOW_EXPERIMENT_NAME or
    $MLFLOW_EXPERIMENT_ID, else MLflow's Default experiment."""
    from mlflow.exceptions import MlflowException

    name = name or os.environ.get("MLFLOW_EXPERIMENT_NAME")
    if not name:
        return os.environ.get("MLFLOW_EXPERIMENT_ID") or DEFAULT_EXPERIMENT
    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return str(client.create_experiment(name))
        except MlflowException:  # made meanwhile by a job in another process
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise ConfigError(f"The MLflow experiment {name!r} is deleted: restore it (mlflow "
                          f"experiments restore --experiment-id {found.experiment_id}) or name "
                          "another with logger.mlflow.experiment=NAME.")
    return str(found.experiment_id)


def _context_tags(tags: dict[str, str]) -> dict[str, str]:
    """`tags` with those MLflow's own `start_run` adds (user, source, git commit)."""
    try:
        from mlflow.tracking.context.registry import resolve_tags

        return dict(resolve_tags(tags))
    except Exception:  # an internal of MLflow's; the run goes on without them
        return tags


class MlflowLogger(NullLogger):
    """A run's MLflow run: a new one, a child of its sweep's parent where there is one, or
    the one RUN_DIR/mlflow.json names (a resumed run)."""

    def __init__(self, run_dir: Path, config: Mapping[str, Any],
                 options: Mapping[str, Any]) -> None:
        from mlflow.entities import RunStatus

        self.client, self.uri = _client()
        self.run_dir = Path(run_dir)
        self.flush_secs = float(options.get("flush_secs", 10))
        self.points: list[Any] = []
        self.flush_at = 0.0  # the first points go at once: the run shows its curves
        self.status = "failed"  # until log_hparams tells how the run ended
        self.closed = False
        known = _marker(self.run_dir / MARKER, self.uri)
        if known is not None and self._exists(known["run_id"]):
            self.run_id = known["run_id"]
            self.client.update_run(self.run_id, status=RunStatus.to_string(RunStatus.RUNNING))
            logged = dict(self.client.get_run(self.run_id).data.params)
        else:
            self.run_id = self._create(config, options)
            logged = {}
        self._log_params(flat_hparams(config), logged)
        where = f"{self.uri.rstrip('/')}/#/experiments/{self.experiment}/runs/{self.run_id}" \
            if self.uri.startswith("http") else self.uri
        log.info(f"MLflow run {self.run_id}: {where}")

    def _exists(self, run_id: str) -> bool:
        from mlflow.exceptions import MlflowException

        try:
            self.experiment = self.client.get_run(run_id).info.experiment_id
            return True
        except MlflowException:  # deleted for good, or another store
            return False

    def _create(self, config: Mapping[str, Any], options: Mapping[str, Any]) -> str:
        tags = {"dltrain.run_dir": str(self.run_dir.resolve())}
        parent = _marker(self.run_dir.parent / MARKER, self.uri)
        if parent is not None:  # a job of a sweep: in its parent's experiment, as its child
            self.experiment = parent["experiment_id"]
            tags["mlflow.parentRunId"] = parent["run_id"]
        else:
            self.experiment = experiment_id(self.client, options.get("experiment"))
        run = self.client.create_run(self.experiment, run_name=str(
            config.get("name") or self.run_dir.name), tags=_context_tags(tags))
        write_json(self.run_dir / MARKER, {"tracking_uri": self.uri,
                                           "experiment_id": self.experiment,
                                           "run_id": run.info.run_id})
        return run.info.run_id

    def _log_params(self, hparams: Mapping[str, Any], logged: Mapping[str, str]) -> None:
        """The config as params; a resumed run's params stay as they were (MLflow keeps a
        param's first value): a key a resume changed is named, its new value is in
        .hydra/config.yaml."""
        from mlflow.entities import Param
        from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH, MAX_PARAMS_TAGS_PER_BATCH

        values = {k: written(v)[:MAX_PARAM_VAL_LENGTH] for k, v in hparams.items()}
        changed = sorted(k for k, v in values.items() if k in logged and logged[k] != v)
        if changed:
            log.info(f"MLflow keeps the first value of a param: {', '.join(changed)} changed "
                     "on resuming (the run's .hydra/config.yaml has the new values)")
        params = [Param(k, v) for k, v in values.items() if k not in logged]
        for i in range(0, len(params), MAX_PARAMS_TAGS_PER_BATCH):
            self.client.log_batch(self.run_id, params=params[i:i + MAX_PARAMS_TAGS_PER_BATCH])

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        self.points.extend(Metric(tag, float(value), stamp, int(step))
                           for tag, value in metrics.items())
        if time.monotonic() >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        """Send the points that wait; a tracking server that fails costs them, never the run
        (the run's own metrics.jsonl has every point)."""
        from mlflow.utils.validation import MAX_METRICS_PER_BATCH

        points, self.points = self.points, []
        self.flush_at = time.monotonic() + self.flush_secs
        try:
            for i in range(0, len(points), MAX_METRICS_PER_BATCH):
                self.client.log_batch(self.run_id, metrics=points[i:i + MAX_METRICS_PER_BATCH])
        except Exception as err:
            log.warning(f"MLflow: {len(points)} metric points not sent: "
                        f"{type(err).__name__}: {err}".splitlines()[0])

    def log_hparams(self, hparams: Mapping[str, Any], status: str) -> None:
        self.status = status  # the params went at the start; the end is told here

    def close(self) -> None:
        """The last points, the run's files as artifacts and its status. Called after
        summary.json is written (dltrain.rundir.Record.close)."""
        if self.closed:
            return
        self.closed = True
        self.flush()
        try:
            for name in ARTIFACTS:
                if (self.run_dir / name).is_file():
                    self.client.log_artifact(self.run_id, str(self.run_dir / name))
            self.client.set_tag(self.run_id, STATUS_TAG, self.status)
            self.client.set_terminated(self.run_id, RUN_STATUS.get(self.status, "FAILED"))
        except Exception as err:  # the run's own files are written whatever MLflow says
            log.warning(f"MLflow: the run's end was not recorded: {type(err).__name__}: "
                        f"{err}".splitlines()[0])


class SweepParent(Callback):
    """A sweep's parent run (conf/logger/mlflow.yaml adds this callback): made before the
    first job and named in SWEEP_DIR/mlflow.json, where the jobs find it; ended after the
    last job, FINISHED if every job completed, else FAILED (the sweep's exit code is not 0)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        options = chosen_loggers(config).get("mlflow")
        if options is None:  # logger=[mlflow] set per job only: the jobs are runs of their own
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        sweep_dir.mkdir(parents=True, exist_ok=True)
        client, uri = _client()
        known = _marker(sweep_dir / MARKER, uri)
        if known is not None:  # the same sweep directory again (a sweep continued)
            client.update_run(known["run_id"], status="RUNNING")
            return
        experiment = experiment_id(client, options.get("experiment"))
        overrides = " ".join(str(o) for o in config.hydra.overrides.task)
        run = client.create_run(experiment, run_name=str(config.get("name") or sweep_dir.name),
                                tags=_context_tags({SWEEP_TAG: str(sweep_dir),
                                                    "dltrain.overrides": overrides}))
        write_json(sweep_dir / MARKER, {"tracking_uri": uri, "experiment_id": experiment,
                                        "run_id": run.info.run_id})
        log.info(f"MLflow parent run {run.info.run_id} of the sweep {sweep_dir}")

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        if chosen_loggers(config).get("mlflow") is None:
            return
        sweep_dir = Path(str(config.hydra.sweep.dir)).resolve()
        client, uri = _client()
        known = _marker(sweep_dir / MARKER, uri)
        if known is None:
            return
        statuses = []  # every job's, from its summary.json (none: it did not get that far)
        for job in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
            summary = job.parent.parent / "summary.json"
            statuses.append(json.loads(summary.read_text()).get("status")
                            if summary.is_file() else "failed")
        done = sum(s == "completed" for s in statuses)
        client.set_tag(known["run_id"], STATUS_TAG, f"{done} of {len(statuses)} completed")
        status = "FINISHED" if statuses and done == len(statuses) else \
            "KILLED" if "interrupted" in statuses else "FAILED"
        client.set_terminated(known["run_id"], status)
