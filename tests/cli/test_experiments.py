"""Every lecture experiment as the command line runs it, smoke-sized: `dltrain -m
experiment=NAME trainer=smoke` runs its sweep and writes its report, section, figures and
numbers.

The six commands run one after the other in one process (`dltrain.cli.main`, the console
script's own entry point, with the same arguments), which spares five starts of Python, torch
and Hydra; what runs is the same as six `dltrain` calls.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dltrain.cli import conf_dir

pytestmark = pytest.mark.e2e

EXPERIMENTS = sorted(p.stem for p in (conf_dir() / "experiment").glob("*.yaml"))
FIGURES = {"init_study": ["by_depth"], "overfitting": ["u_curve"], "double_descent": ["curve"],
           "bias_variance": ["decomposition", "fits"], "optimizers": ["curves"],
           "resnet_vs_plain": ["depth"], "rnn_memory": ["memory"]}
# bias_variance's 30 training sets a width are 90 runs to write: 5 show the decomposition
EXTRA = {"bias_variance": ["trainer.seed=range(0,5)"]}
RUN_ALL = """
import json, sys
from dltrain.cli import main
codes = {}
extra = json.loads(sys.argv[2])
for name in sys.argv[3:]:
    try:
        main(["-m", f"experiment={name}", "trainer=smoke", f"hydra.sweep.dir={sys.argv[1]}/{name}",
              *extra.get(name, [])])
    except SystemExit as end:
        codes[name] = end.code
print("EXIT CODES " + json.dumps(codes))
"""


def test_every_experiment_has_a_report_section():
    assert sorted(FIGURES) == EXPERIMENTS


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("experiments")
    # tiny models: one thread each is faster than two fighting over a shared CI machine
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.run([sys.executable, "-c", RUN_ALL, str(root), json.dumps(EXTRA),
                           *EXPERIMENTS], cwd=root, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("EXIT CODES ")), None)
    assert line is not None, proc.stderr[-3000:]
    assert json.loads(line[len("EXIT CODES "):]) == dict.fromkeys(EXPERIMENTS, 0), \
        proc.stderr[-3000:]
    return root


@pytest.fixture(params=EXPERIMENTS)
def sweep(request, sweeps) -> tuple[str, Path]:
    return request.param, sweeps / request.param


def rows(sweep_dir: Path) -> list[dict[str, str]]:
    return list(csv.DictReader((sweep_dir / "experiment.csv").open()))


def test_the_experiment_writes_its_report_with_figures(sweep):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    name, sweep_dir = sweep
    report = (sweep_dir / "report.md").read_text()
    assert f"## Experiment: {name}" in report
    acc = EventAccumulator(str(sweep_dir / "tb"), size_guidance={"images": 0})
    acc.Reload()
    for figure in FIGURES[name]:
        png = sweep_dir / "plots" / f"{name}_{figure}.png"
        assert png.read_bytes()[:4] == b"\x89PNG" and f"plots/{png.name}" in report
        (image,) = acc.Images(f"report/{name}/{figure}")
        assert image.encoded_image_string == png.read_bytes()
    assert rows(sweep_dir)
    jobs = [p for p in sweep_dir.iterdir() if (p / "summary.json").is_file()]
    assert jobs and all('"completed"' in (p / "summary.json").read_text() for p in jobs)


def test_the_numbers_behind_the_section(sweep):
    name, sweep_dir = sweep
    table = rows(sweep_dir)
    if name == "init_study":
        # step 0 does not depend on how long training ran: the lecture's numbers, even smoke
        ratio = {r["configuration"]: float(r["std_ratio_per_layer"]) for r in table}
        assert len(ratio) == 8
        assert ratio["model.activation=identity, init=normal"] == pytest.approx(0.5, abs=0.05)
        assert ratio["model.activation=identity, init=lecun"] == pytest.approx(1.0, abs=0.05)
        assert ratio["model.activation=tanh, init=normal"] == pytest.approx(0.5, abs=0.05)
    elif name == "bias_variance":
        assert [int(r["training_sets"]) for r in table] == [5, 5, 5]  # EXTRA's seeds
        for r in table:
            terms = float(r["bias2"]) + float(r["variance"]) + float(r["noise"])
            assert float(r["expected"]) == pytest.approx(terms)
            assert float(r["noise"]) == pytest.approx(0.3**2)
        assert "bias²" in (sweep_dir / "report.md").read_text()
    elif name in ("overfitting", "double_descent"):
        assert all(float(r["train_mse"]) >= 0 and float(r["test_mse"]) > 0 for r in table)
        params = sorted(int(r["params"]) for r in table)
        assert params[0] < params[-1]
    elif name == "optimizers":
        assert {r["optimizer"] for r in table} == {"sgd", "momentum", "adam", "lbfgs"}
        assert "Every run started from the same weights" in (sweep_dir / "report.md").read_text()
    elif name == "resnet_vs_plain":
        layers = {(r["family"], int(r["weight_layers"])) for r in table}
        assert layers == {("plain", 3), ("plain", 9), ("plain", 21),
                          ("residual", 6), ("residual", 18), ("residual", 42)}


def test_the_rnn_memory_section_states_its_cells_and_lengths(sweeps):
    """experiment=rnn_memory under trainer=smoke: one job per cell and length, the baseline
    beside each, and the gradient reaching the first step fading with the length at step 0
    (the same however long the run)."""
    sweep = sweeps / "rnn_memory"
    report = (sweep / "report.md").read_text()
    table = rows(sweep)
    assert [(r["cell"], int(r["length"])) for r in table] == [
        (cell, length) for cell in ("rnn", "gru", "lstm") for length in (10, 50, 100, 200)]
    for r in table:
        assert float(r["baseline_mse"]) == pytest.approx(1 / 6, rel=0.1)
        assert float(r["test_mse"]) > 0 and float(r["grad_first_step_at_0"]) >= 0
    first = {(r["cell"], int(r["length"])): float(r["first_over_last_at_0"]) for r in table}
    for cell in ("rnn", "gru", "lstm"):
        assert first[(cell, 200)] < first[(cell, 50)] < first[(cell, 10)]
        assert f"- {cell}: test mse " in report
        assert f"- {cell}: the gradient reaching the first step" in report
    jobs = [p for p in sweep.iterdir() if (p / "summary.json").is_file()]
    assert len(jobs) == 12
