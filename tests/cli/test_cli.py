"""The real `dltrain` command in a subprocess, asserting on the files it writes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.conftest import run_cli

pytestmark = pytest.mark.e2e


def scalars(tb_dir) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tb_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}, acc


def test_smoke_run_writes_the_run_directory_of_the_contract(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli("trainer=smoke", f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for path in (".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoints/last.pt",
                 "checkpoints/best.pt", "metrics.jsonl", "summary.json", "train.log"):
        assert (run_dir / path).is_file(), path
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 20
    assert "val/accuracy" in (run_dir / "train.log").read_text()

    values, acc = scalars(run_dir / "tb")
    for tag in ("train/loss", "train/lr", "val/loss", "val/accuracy", "test/loss",
                "test/accuracy", "perf/samples_per_s"):
        assert tag in values, tag
    assert values["test/accuracy"][-1].value == pytest.approx(summary["test"]["accuracy"])
    assert values["train/loss"][-1].step == 20
    # HParams: the run's hyperparameters and its end, in its own event file; no experiment
    # summary of its own (TensorBoard builds one from all runs: see dltrain/log/tensorboard.py)
    hparams = acc.PluginTagToContent("hparams")
    assert set(hparams) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
    from tensorboard.plugins.hparams import api_pb2, plugin_data_pb2

    start = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/session_start_info"]).session_start_info
    assert start.hparams["optim.lr"].number_value == pytest.approx(0.003)
    assert start.hparams["model.name"].string_value == "mlp"
    end = plugin_data_pb2.HParamsPluginData.FromString(
        hparams["_hparams_/session_end_info"]).session_end_info
    assert end.status == api_pb2.STATUS_SUCCESS


def test_multirun_gives_one_complete_run_directory_per_job(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli("-m", "optim.lr=0.001,0.01", "trainer=smoke", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted(p for p in sweep.iterdir() if (p / ".hydra").is_dir())  # not the report's
    assert len(jobs) == 2
    lrs = []
    for job in jobs:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert (job / "checkpoints" / "last.pt").is_file() and any((job / "tb").iterdir())
        lrs.append(yaml.safe_load((job / ".hydra" / "config.yaml").read_text())["optim"]["lr"])
    assert sorted(lrs) == [0.001, 0.01]


def test_default_run_learns_glyphs(tmp_path):
    """The README's main job: `dltrain` with no arguments, an MLP on glyphs, >= 85%."""
    run_dir = tmp_path / "run"
    proc = run_cli(f"hydra.run.dir={run_dir}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test"]["accuracy"] >= 0.85
    assert summary["epochs"] == 10


def test_a_typo_exits_2_with_one_sentence_and_no_run(tmp_path):
    proc = run_cli("optim.lrr=0.1", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == ("dltrain: optim.lrr is not a key of the config; did you mean "
                                   "optim.lr? (To add a new key on purpose, write "
                                   "+optim.lrr=VALUE.)")
    assert "Traceback" not in proc.stderr and not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("args", [["--help"], ["list"], ["optim.lr=-1"], ["model=cnnnn"]])
def test_help_list_and_config_errors_do_not_import_torch(args, tmp_path):
    code = (
        "import sys\n"
        "from dltrain.cli import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit as e:\n    code = e.code\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', code)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, check=False)
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("NO-TORCH"), proc.stdout + proc.stderr
    assert last.endswith("0" if args[0] in ("--help", "list") else "2")


@pytest.mark.parametrize("overrides", [[], ["model=cnn", "optim=sgd", "optim.lr=0.1"]])
def test_help_is_the_text_hydra_writes(overrides):
    """dltrain fills in the help template itself (the groups from conf/, not from Hydra's
    slow listing); the text is Hydra's own app help, word for word."""
    import copy

    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra

    from dltrain.cli import CONFIG_NAME, conf_dir
    from dltrain.cli.app import app_help

    with initialize_config_dir(str(conf_dir()), version_base="1.3", job_name=CONFIG_NAME):
        cfg = compose(CONFIG_NAME, overrides=overrides, return_hydra_config=True)
        hydra = GlobalHydra.instance().hydra
        job = hydra.get_sanitized_cfg(copy.deepcopy(cfg), "job")
        expected = hydra.get_help(cfg.hydra.help, job, get_args_parser(), resolve=False)
    text = app_help(overrides)
    assert text == expected
    assert "\nmodel: cnn, deeponet, diffusion, fno, gan, mlp, " in text \
        and "hydra/" not in text.split("The default")[0]


def test_help_with_a_bad_override_is_one_sentence(tmp_path):
    proc = run_cli("--help", "model=cnnn", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("dltrain: model=cnnn: there is no such option in group model; "
                                  "did you mean model=cnn? (options: cnn, ")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_hydra_own_help_config_and_info_still_answer(tmp_path):
    hydra_help = run_cli("--hydra-help", cwd=tmp_path)
    assert hydra_help.returncode == 0
    assert hydra_help.stdout.startswith("Hydra (") and "hydra/launcher: " in hydra_help.stdout
    job = run_cli("--cfg", "job", "model=cnn", "optim.lr=0.1", cwd=tmp_path)
    assert job.returncode == 0
    config = yaml.safe_load(job.stdout)
    assert config["model"]["name"] == "cnn" and config["optim"]["lr"] == 0.1
    assert "hydra" not in config
    info = run_cli("--info", cwd=tmp_path)
    assert info.returncode == 0 and "Config search path" in info.stdout
    assert not (tmp_path / "outputs").exists()  # none of them ran anything


def test_a_run_composes_its_config_twice_not_three_times(tmp_path, monkeypatch):
    """The preflight's composition tells Hydra the mode (Hydra.get_mode would compose the
    whole config once more to read it): one composition there, one for the run. Hydra's own
    get_mode is back in place afterwards."""
    from hydra._internal.hydra import Hydra

    from dltrain.cli import main

    own_compose, own_get_mode = Hydra.compose_config, Hydra.get_mode
    composed = []

    def counted(self, *args, **kwargs):
        composed.append(kwargs.get("run_mode"))
        return own_compose(self, *args, **kwargs)

    monkeypatch.setattr(Hydra, "compose_config", counted)
    run = tmp_path / "run"
    with pytest.raises(SystemExit) as done:
        main(["trainer=smoke", "trainer.max_steps=2", f"hydra.run.dir={run}"])
    assert done.value.code == 0
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert len(composed) == 2, composed
    assert Hydra.get_mode is own_get_mode
