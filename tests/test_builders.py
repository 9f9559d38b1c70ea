"""The builders' side of the config: plain mappings in, no Hydra imported, no second defaults.

build_data, build_model, build_loss and loss_spec read their nodes by subscript, so a plain
dict (what the job hands them) and a DictConfig (what older callers hand them) build the same.
"""

import subprocess
import sys

import pytest
import torch
from torch import nn

from dltrain.data import build_data
from dltrain.data.spec import DataSpec
from dltrain.losses import ReconstructionLoss, build_loss, loss_spec
from dltrain.models import build_model
from dltrain.targets import plain


def imported_after(statement: str, roots: tuple[str, ...]) -> list[str]:
    """The modules under `roots` that a fresh interpreter has loaded after `statement`."""
    code = (f"import sys\n{statement}\n"
            f"print(*sorted(m for m in sys.modules if m.split('.')[0] in {roots!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def test_models_and_data_import_without_hydra():
    assert imported_after("import dltrain.models, dltrain.data, dltrain.losses",
                          ("hydra",)) == []


def test_validation_imports_without_torch():
    assert imported_after("import dltrain.config, dltrain.rules", ("torch",)) == []


def test_a_plain_dict_and_a_dictconfig_build_the_same(make_cfg):
    cfg = make_cfg("data=moons", "data.n_train=200", "model.depth=1", "model.width=8",
                   "init=normal", "loss=cross_entropy", "loss.label_smoothing=0.1")
    data_a, data_b = build_data(plain(cfg.data)), build_data(cfg.data)
    assert torch.equal(data_a.train.x, data_b.train.x) and data_a.spec == data_b.spec
    spec = loss_spec(plain(cfg.loss), data_a.spec)
    assert spec == loss_spec(cfg.loss, data_a.spec)
    torch.manual_seed(0)
    a = build_model(plain(cfg.model), plain(cfg.init), spec)
    torch.manual_seed(0)
    b = build_model(cfg.model, cfg.init, spec)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    loss_a, loss_b = build_loss(plain(cfg.loss), spec), build_loss(cfg.loss, spec)
    assert loss_a.label_smoothing == loss_b.label_smoothing == 0.1


def test_init_std_is_read_only_by_the_scheme_that_has_it(make_cfg):
    spec = DataSpec("moons", "classification", "vector", (2,), num_classes=2)
    model = plain(make_cfg("model.hidden=[400]").model)
    torch.manual_seed(0)
    normal = build_model(model, {"name": "normal", "std": 0.5}, spec)
    assert normal.hidden[0].linear.weight.std().item() == pytest.approx(0.5, rel=0.1)
    torch.manual_seed(0)
    kaiming = build_model(model, {"name": "kaiming"}, spec)  # no std: it has none
    assert kaiming.hidden[0].linear.weight.std().item() == pytest.approx(1.0, rel=0.1)


def test_a_named_loss_trains_a_vae_on_the_elbo_itself(make_cfg):
    """Only loss=auto has beta; with any other loss the KL term weighs 1."""
    spec = DataSpec("glyphs", "reconstruction", "image", (1, 28, 28), num_classes=10)
    loss = build_loss(plain(make_cfg("loss=mse").loss), spec)
    assert isinstance(loss, ReconstructionLoss) and loss.beta == 1.0
    assert isinstance(loss.inner, nn.MSELoss)


def test_an_augment_node_without_every_key_is_refused(make_cfg):
    from omegaconf import open_dict

    from dltrain.config import validate
    from dltrain.errors import ConfigError

    cfg = make_cfg("reg=[augment]")
    validate(cfg)
    with open_dict(cfg):
        del cfg.data.augment["noise"]
    with pytest.raises(ConfigError, match="must be null or set by reg=\\[augment\\]"):
        validate(cfg)
