"""Your own code and configs (issue 19): a model and a loss of your own from the current
folder, a -cd folder of groups, a plain YAML with -cn, and keys that nothing reads refused."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from dltrain.cli.preflight import preflight
from dltrain.cli.sources import sources
from dltrain.errors import ConfigError
from tests.conftest import run_cli

MODEL = '''
import math

from torch import nn


class MyNet(nn.Module):
    """One hidden layer of `width` (model=mlp's key, handed over with the others)."""

    def __init__(self, spec, width=64, **keys):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(spec.input_shape), width),
                                 nn.Tanh(), nn.Linear(width, spec.out_features))

    def forward(self, x):
        return self.net(x)


class InputLoss(nn.Module):
    """A loss that reads the inputs: scale times their number of features."""

    def __init__(self, scale=1.0):
        super().__init__()
        self.scale = scale

    def forward(self, out, y, x):
        return self.scale * x.shape[-1] + 0.0 * out.sum()


class Strict(nn.Module):
    def __init__(self, spec, width=8):
        super().__init__()
        self.lin = nn.Linear(2, spec.out_features)

    def forward(self, x):
        return self.lin(x)
'''
RUN = ("data=moons", "trainer=smoke", "logger=none")


def hidden_layer_params(features: int, width: int, outputs: int) -> int:
    return features * width + width + width * outputs + outputs


def write_code(folder: Path) -> None:
    (folder / "mynet.py").write_text(textwrap.dedent(MODEL))


def write_configs(folder: Path) -> Path:
    cfg = folder / "cfg"
    (cfg / "model").mkdir(parents=True)
    (cfg / "experiment").mkdir()
    (cfg / "model" / "mynet.yaml").write_text(
        "# My own small network, from mynet.py.\n_target_: mynet.MyNet\nname: mynet\nwidth: 12\n")
    (cfg / "experiment" / "quick.yaml").write_text(textwrap.dedent("""\
        # @package _global_
        # A quick look at moons with my network.
        defaults:
          - override /data: moons
          - override /model: mynet
        model:
          width: 10
        """))
    (cfg / "plain.yaml").write_text("data:\n  n_train: 300\nmodel:\n  width: 7\n")
    return cfg


@pytest.mark.e2e
def test_own_model_and_a_loss_that_reads_the_inputs(tmp_path):
    write_code(tmp_path)
    proc = run_cli("model._target_=mynet.MyNet", "model.width=16", "loss=mse",
                   "loss._target_=mynet.InputLoss", "+loss.scale=3.0", *RUN,
                   "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    # moons: 2 features, 2 classes; the class of the current folder with model.width=16
    assert summary["params"] == hidden_layer_params(2, 16, 2) == 82
    # the run names what it trained: the user's classes, not the options they replaced
    assert summary["options"]["model"] == "mynet.MyNet"
    assert summary["options"]["loss"] == "mynet.InputLoss"
    first = (tmp_path / "run" / "train.log").read_text().splitlines()[0]
    assert "mynet.MyNet: 82 parameters" in first
    # the loss was given the key and the inputs, in training and in evaluation: 3.0 * 2
    losses = [json.loads(line)["train/loss"] for line in
              (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
              if "train/loss" in line]
    assert losses and all(v == pytest.approx(6.0) for v in losses)
    assert summary["test"]["loss"] == pytest.approx(6.0)
    assert summary["val"]["loss"] == pytest.approx(6.0)


@pytest.mark.e2e
def test_a_class_that_does_not_take_the_keys_is_one_sentence(tmp_path):
    write_code(tmp_path)
    proc = run_cli("model._target_=mynet.Strict", *RUN, "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("dltrain: model._target_=mynet.Strict does not take the keys")
    assert "its signature is Strict(spec, width=8)" in line
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.e2e
def test_config_dir_model_experiment_and_list(tmp_path):
    write_code(tmp_path)
    cfg = write_configs(tmp_path)
    proc = run_cli("-cd", "cfg", "experiment=quick", "trainer=smoke", "logger=none",
                   "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["params"] == hidden_layer_params(2, 10, 2)  # the experiment's width
    assert summary["options"]["model"] == "mynet"
    listed = run_cli("list", "model", "-cd", str(cfg), cwd=tmp_path)
    assert listed.returncode == 0
    line = next(x for x in listed.stdout.splitlines() if "mynet" in x)
    assert "My own small network, from mynet.py." in line
    listed = run_cli("-cd", "cfg", "list", cwd=tmp_path)
    assert any(x.split()[:1] == ["quick"] for x in listed.stdout.splitlines())


@pytest.mark.e2e
def test_plain_yaml_gets_train_defaults_and_the_report_reruns_it(tmp_path):
    write_code(tmp_path)
    cfg = write_configs(tmp_path)
    proc = run_cli("-m", "-cd", "cfg", "-cn", "plain", *RUN, "optim.lr=0.01,0.02",
                   "hydra.sweep.dir=sweep", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    job = next(p for p in (tmp_path / "sweep").iterdir() if p.name.startswith("0_"))
    config = yaml.safe_load((job / ".hydra" / "config.yaml").read_text())
    assert config["data"]["n_train"] == 300 and config["model"]["width"] == 7  # the YAML's
    assert config["optim"]["name"] == "adam" and config["model"]["depth"] == 2  # train.yaml's
    summary = json.loads((job / "summary.json").read_text())
    assert summary["params"] == 2 * 7 + 7 + 7 * 7 + 7 + 7 * 2 + 2
    best = yaml.safe_load((tmp_path / "sweep" / "best.yaml").read_text())
    assert best["command"].startswith(f"dltrain -cd {cfg} -cn plain data=moons ")


@pytest.mark.e2e
def test_a_key_that_nothing_reads_is_refused_before_training(tmp_path):
    proc = run_cli("+data.path=x.csv", "trainer=smoke", "hydra.run.dir=run", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dltrain: data.path is not a key of data=glyphs, so nothing "
                                  "would read it; data=")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("overrides", "message"), [
    (["+data.path=x.csv"], "data.path is not a key of data=glyphs, so nothing would read it"),
    (["+data.nosie=0.1"], "did you mean data.noise?"),
    (["optim.name=foo"], "optim.name=foo: the name labels the chosen option (optim=adam) and "
                         "chooses nothing; to choose another, write optim=NAME"),
    (["loss.name=cross_entropyy"], "did you mean loss=cross_entropy?"),
    (["+loss._target_=mynet.InputLoss"],
     "loss=auto is not built from a _target_, so loss._target_ would be ignored"),
    (["+init.std=0.1"], "init.std is not a key of init=default, so nothing would read it; "
                        "init=normal has it"),
    (["+trainer.grad_clip.norm=1"], "trainer.grad_clip.norm is not a key of trainer=default"),
    (["loss._target_=x"], "write +loss._target_=VALUE"),
    (["+model._target_=x"], "model._target_ is already a key of the config: write "
                            "model._target_=VALUE, without the +."),
])
def test_keys_that_nothing_reads(overrides, message):
    with pytest.raises(ConfigError) as err:
        preflight(overrides, False)
    assert message in str(err.value)


@pytest.mark.parametrize("overrides", [
    ["+optim.amsgrad=true"],  # read by torch's Adam, which is handed every key
    ["trainer=smoke", "reg=[augment,dropout,grad_clip,early_stopping,weight_decay,l2]"],
    ["optim=lbfgs"],  # a preset of @package _global_ that sets data.batch_size
    ["init=normal", "init.std=0.1"],
    ["model._target_=mynet.MyNet", "+model.anything=1", "model.width=0"],  # the user's keys
])
def test_keys_that_are_read_pass(overrides):
    preflight(overrides, False)


def test_config_dir_mistakes_are_one_sentence(tmp_path):
    cfg = write_configs(tmp_path)
    with pytest.raises(ConfigError, match="there is no such folder"):
        sources(str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"-cn nope: there is no .*nope.yaml"):
        sources(str(cfg), "nope")
    (cfg / "model" / "unnamed.yaml").write_text("_target_: mynet.MyNet\nwidth: 3\n")
    with pytest.raises(ConfigError, match=r"unnamed\.yaml needs a line `name: unnamed`"):
        preflight(["model=unnamed"], False, sources(str(cfg)))
    with pytest.raises(ConfigError, match=r"model=mynett: .* did you mean model=mynet\?"):
        preflight(["model=mynett"], False, sources(str(cfg)))
    (cfg / "model" / "mlp.yaml").write_text("_target_: mynet.MyNet\nname: mlp\n")
    with pytest.raises(ConfigError, match="has the name of dltrain's own model=mlp"):
        sources(str(cfg))


def test_help_lists_a_config_dirs_options(tmp_path):
    from dltrain.cli.app import app_help

    text = app_help([], src=sources(str(write_configs(tmp_path))))
    assert "model: cnn, deeponet, diffusion, fno, gan, mlp, mynet, resnet, rnn, transformer" in text
