"""The sweep report over hand-made sweep directories: grouping, statistics, ranking, failures,
and the files it writes."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from dltrain.report import (
    Job,
    Stat,
    aggregate,
    best_config,
    exit_code,
    read_sweep,
    swept_keys,
    to_csv,
    to_markdown,
)
from dltrain.sweep_report import write_sweep_report


def make_job(sweep: Path, name: str, overrides: dict, summary: dict | None,
             config: dict | None = None) -> Path:
    """A job directory as Hydra and dltrain.run leave it."""
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(
        yaml.safe_dump([f"{k}={v}" for k, v in overrides.items()]))
    if config is None:
        config = {"optim": {"name": "adam", "lr": 0.001}, "trainer": {"seed": 0},
                  "data": {"name": "moons"}}
        for key, value in overrides.items():
            node = config
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            if leaf not in node or not isinstance(node[leaf], dict):
                node[leaf] = yaml.safe_load(str(value))
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if summary is not None:
        (job / "summary.json").write_text(json.dumps(summary))
    return job


def done(objective: float, accuracy: float, mode: str = "max", wall: float = 1.0) -> dict:
    metric = "val/accuracy" if mode == "max" else "val/loss"
    return {"status": "completed", "objective": objective,
            "best": {"metric": metric, "mode": mode, "value": objective, "step": 20},
            "test": {"loss": 1 - accuracy, "accuracy": accuracy}, "wall_s": wall}


# objective (val accuracy) of each (lr, seed) run: two learning rates, three seeds
SCORES = {0.001: [0.80, 0.84, 0.82], 0.01: [0.95, 0.93, 0.97]}


@pytest.fixture
def seed_sweep(tmp_path) -> Path:
    num = 0
    for lr, scores in SCORES.items():
        for seed, score in enumerate(scores):
            make_job(tmp_path, f"{num}_lr={lr},seed={seed}",
                     {"data": "moons", "optim.lr": lr, "trainer.seed": seed},
                     done(score, score - 0.01, wall=2.0 + seed))
            num += 1
    return tmp_path


def test_runs_differing_only_in_the_seed_are_one_row_with_mean_and_sample_std(seed_sweep):
    report = aggregate(seed_sweep, read_sweep(seed_sweep))
    assert report.keys == ("optim.lr",) and report.seeds == ("trainer.seed",)
    assert report.fixed == {"data": "moons"}
    assert [r.params for r in report.rows] == [{"optim.lr": 0.01}, {"optim.lr": 0.001}]
    for row in report.rows:
        scores = SCORES[row.params["optim.lr"]]
        assert row.objective.n == 3 and len(row.jobs) == 3 and row.completed == 3
        assert row.objective.mean == pytest.approx(statistics.fmean(scores))
        assert row.objective.std == pytest.approx(statistics.stdev(scores))  # n-1, not n
        assert row.metrics["test/accuracy"].mean == pytest.approx(statistics.fmean(scores) - 0.01)
        assert row.wall_s.mean == pytest.approx(3.0)
        assert row.status == "completed"
    assert report.best is report.rows[0] and report.metric == "val/accuracy"
    assert str(report.rows[0].objective) == "0.95 ± 0.02"
    assert exit_code(report) == 0


def test_a_minimised_objective_ranks_the_lowest_first(tmp_path):
    for num, loss in enumerate([0.30, 0.10, 0.20]):
        make_job(tmp_path, f"{num}_x", {"optim.lr": [0.1, 0.2, 0.3][num]},
                 done(loss, 0.0, mode="min"))
    report = aggregate(tmp_path, read_sweep(tmp_path))
    assert report.mode == "min" and report.metric == "val/loss"
    assert [r.objective.mean for r in report.rows] == [0.10, 0.20, 0.30]
    assert best_config(report)["params"] == {"optim.lr": 0.2}


def test_failed_diverged_and_unfinished_runs_are_listed_and_fail_the_sweep(tmp_path):
    make_job(tmp_path, "0_lr=0.01", {"optim.lr": 0.01, "trainer.seed": 0}, done(0.9, 0.9))
    make_job(tmp_path, "1_lr=0.01", {"optim.lr": 0.01, "trainer.seed": 1},
             {"status": "diverged", "error": "The training loss became nan at step 7.\nmore",
              "wall_s": 0.5})
    make_job(tmp_path, "2_lr=10", {"optim.lr": 10, "trainer.seed": 0},
             {"status": "failed", "error": "RuntimeError: boom", "wall_s": 0.1})
    make_job(tmp_path, "3_lr=10", {"optim.lr": 10, "trainer.seed": 1}, None)
    report = aggregate(tmp_path, read_sweep(tmp_path))
    assert [j.name for j in report.failures] == ["1_lr=0.01", "2_lr=10", "3_lr=10"]
    first, second = report.rows
    assert first.params == {"optim.lr": 0.01} and first.status == "1 completed, 1 diverged"
    assert first.objective == Stat(0.9, None, 1)
    assert second.objective is None and second.status == "1 failed, 1 unfinished"
    assert exit_code(report) == 1
    markdown = to_markdown(report)
    assert "## Failures (3 of 4 runs)" in markdown
    assert "- 1_lr=0.01: diverged: The training loss became nan at step 7." in markdown
    assert "- 2_lr=10: failed: RuntimeError: boom" in markdown
    assert "- 3_lr=10: unfinished: no summary.json" in markdown


def test_an_interrupted_run_makes_the_exit_code_130(tmp_path):
    make_job(tmp_path, "0_a", {"optim.lr": 0.1}, done(0.9, 0.9))
    make_job(tmp_path, "1_b", {"optim.lr": 0.2}, {"status": "interrupted"})
    assert exit_code(aggregate(tmp_path, read_sweep(tmp_path))) == 130


def test_csv_has_one_row_per_configuration_with_raw_numbers(seed_sweep):
    report = aggregate(seed_sweep, read_sweep(seed_sweep))
    rows = list(csv.DictReader(io.StringIO(to_csv(report))))
    assert len(rows) == 2
    top = rows[0]
    assert top["rank"] == "1" and float(top["optim.lr"]) == 0.01
    assert float(top["objective_mean"]) == pytest.approx(0.95)
    assert float(top["objective_std"]) == pytest.approx(statistics.stdev(SCORES[0.01]))
    assert float(top["test/accuracy_mean"]) == pytest.approx(0.94)
    assert top["n"] == "3" and top["runs"] == "3" and top["status"] == "completed"
    assert top["metric"] == "val/accuracy" and top["mode"] == "max"
    assert top["dirs"].split(";") == ["3_lr=0.01,seed=0", "4_lr=0.01,seed=1", "5_lr=0.01,seed=2"]


def test_markdown_table_best_line_and_command(seed_sweep):
    report = aggregate(seed_sweep, read_sweep(seed_sweep))
    markdown = to_markdown(report, [("optim.lr", "plots/objective_vs_optim.lr.png")])
    lines = markdown.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| optim.lr"))
    assert lines[header] == ("| optim.lr | val/accuracy ↑ | test/accuracy | test/loss | n | "
                             "status | wall s |")
    assert lines[header + 2].startswith("| **0.01** | **0.95 ± 0.02** |")
    assert lines[header + 3].startswith("| 0.001 | 0.82 ± 0.02 |")
    assert "mean ± std over trainer.seed" in markdown
    assert "Again: `dltrain data=moons optim.lr=0.01`" in markdown
    assert "![val/accuracy vs optim.lr](plots/objective_vs_optim.lr.png)" in markdown


def test_swept_keys_take_values_from_the_config_when_a_run_did_not_override_them(tmp_path):
    make_job(tmp_path, "a", {"optim.lr": "1e-2"}, None,
             {"optim": {"name": "adam", "lr": 0.01}, "model": {"width": 256}})
    make_job(tmp_path, "b", {"model.width": 64, "optim": "sgd"}, None,
             {"optim": {"name": "sgd", "lr": 0.001}, "model": {"width": 64}})
    jobs = read_sweep(tmp_path)
    assert swept_keys(jobs) == ["optim.lr", "model.width", "optim"]
    assert [j.value("optim.lr") for j in jobs] == [0.01, 0.001]  # typed, from config.yaml
    assert [j.value("model.width") for j in jobs] == [256, 64]
    assert [j.value("optim") for j in jobs] == ["adam", "sgd"]  # a group's option by name


def test_runs_that_disagree_on_the_objective_are_not_ranked(tmp_path):
    make_job(tmp_path, "0_moons", {"data": "moons"}, done(0.9, 0.9))
    make_job(tmp_path, "1_sine", {"data": "sine"}, done(0.05, 0.0, mode="min"))
    report = aggregate(tmp_path, read_sweep(tmp_path))
    assert report.mode is None and report.best is None and best_config(report) is None
    assert report.metric == "val/accuracy / val/loss"
    assert [r.params["data"] for r in report.rows] == ["moons", "sine"]  # sweep order


def test_stat_ignores_missing_and_non_finite_values():
    assert Stat.of([1.0, None, math.nan, 3.0]) == Stat(2.0, statistics.stdev([1.0, 3.0]), 2)
    assert Stat.of([None]) is None
    assert Job("x", {}, {}, {"status": "completed", "objective": math.inf}).objective is None


def test_write_report_writes_every_file_and_a_tensorboard_run(seed_sweep):
    out = io.StringIO()
    report = write_sweep_report(seed_sweep, Console(file=out, width=200))
    text = out.getvalue()
    assert "0.95 ± 0.02" in text and "0.82 ± 0.02" in text
    assert "best: dltrain data=moons optim.lr=0.01" in text
    for name in ("report.csv", "runs.csv", "report.md", "best.yaml",
                 "plots/objective_vs_optim.lr.png"):
        assert (seed_sweep / name).is_file(), name
    assert not (seed_sweep / "plots" / "objective_vs_trainer.seed.png").exists()
    assert (seed_sweep / "plots/objective_vs_optim.lr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    runs = list(csv.DictReader(io.StringIO((seed_sweep / "runs.csv").read_text())))
    assert len(runs) == 6 and {r["trainer.seed"] for r in runs} == {"0", "1", "2"}
    best = yaml.safe_load((seed_sweep / "best.yaml").read_text())
    assert best["params"] == {"optim.lr": 0.01} and best["n"] == 3
    assert best["mean"] == pytest.approx(0.95) and best["overrides"] == ["data=moons",
                                                                         "optim.lr=0.01"]
    assert len(report.rows) == 2

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    write_sweep_report(seed_sweep, Console(file=io.StringIO()))  # again: replaces, not adds
    assert len(list((seed_sweep / "tb").glob("events.out.tfevents.*"))) == 1
    acc = EventAccumulator(str(seed_sweep / "tb"), size_guidance={"images": 0, "tensors": 0})
    acc.Reload()
    assert acc.Tags()["images"] == ["report/objective_vs_optim.lr"]
    image = acc.Images("report/objective_vs_optim.lr")[0]
    assert image.encoded_image_string[:4] == b"\x89PNG" and image.width == 640
    text_event = acc.Tensors("report")[0]
    assert "| optim.lr |" in text_event.tensor_proto.string_val[0].decode()


def test_report_verb_prints_the_table_without_importing_torch_or_hydra(seed_sweep):
    code = (
        "import sys\n"
        "from dltrain.cli import main\n"
        f"try:\n    main(['report', {str(seed_sweep)!r}])\nexcept SystemExit as e:\n"
        "    code = e.code\n"
        "print(*(m for m in ('torch', 'hydra') if m in sys.modules), code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.stdout.strip().splitlines()[-1] == "0", proc.stdout + proc.stderr
    assert "0.95 ± 0.02" in proc.stdout


def test_report_of_a_folder_without_runs_is_a_config_error(tmp_path):
    from dltrain.errors import ConfigError

    with pytest.raises(ConfigError, match="holds no runs"):
        read_sweep(tmp_path)
    with pytest.raises(ConfigError, match="is not a directory"):
        read_sweep(tmp_path / "nope")
