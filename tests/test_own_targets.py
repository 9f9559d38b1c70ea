"""A user's own classes behind `_target_`: their keys are theirs (dltrain's rules skip them),
a loss says by its signature whether it takes the inputs, and a vectorised sweep trains them
alone."""

from __future__ import annotations

import textwrap

import pytest
import torch
from torch import nn

from dltrain.config import own_code, validate
from dltrain.errors import ConfigError
from dltrain.losses import build_loss, takes_inputs, with_inputs
from dltrain.vectorised.plan import alone_reason


class TwoArgs(nn.Module):
    def forward(self, out, y):
        return (out - y).square().mean()


class Reduction(nn.Module):  # a third parameter with a default is not the inputs
    def forward(self, out, y, reduction="mean"):
        return (out - y).square().mean() if reduction == "mean" else (out - y).square().sum()


class ThreeArgs(nn.Module):
    def forward(self, out, y, x):
        return (out - y).square().mean() + x.sum()


def test_takes_inputs_is_read_from_the_signature():
    assert not takes_inputs(nn.MSELoss())
    assert not takes_inputs(TwoArgs())
    assert takes_inputs(ThreeArgs())
    assert not takes_inputs(Reduction())
    out, y, x = torch.zeros(3), torch.ones(3), torch.full((3,), 2.0)
    assert with_inputs(TwoArgs())(out, y, x).item() == 1.0
    assert with_inputs(ThreeArgs())(out, y, x).item() == 7.0
    assert with_inputs(Reduction())(out, y, x).item() == 1.0


def test_own_code_is_a_target_outside_dltrain_and_torch():
    assert own_code({"_target_": "mymodule.MyNet"})
    assert not own_code({"_target_": "dltrain.models.mlp.MLP"})
    assert not own_code({"_target_": "torch.nn.MSELoss"})
    assert not own_code({"name": "auto"})


def test_rules_skip_the_keys_of_a_users_class(make_cfg):
    with pytest.raises(ConfigError, match=r"model\.width=0"):
        validate(make_cfg("model.width=0"))
    validate(make_cfg("model._target_=mymodule.MyNet", "model.width=0"))


@pytest.fixture
def mymodule(tmp_path, monkeypatch):
    (tmp_path / "mymodule.py").write_text(textwrap.dedent("""
        from torch import nn

        class Net(nn.Module):
            def __init__(self, spec, **keys):
                super().__init__()
                self.lin = nn.Linear(2, spec.out_features)

            def forward(self, x):
                return self.lin(x)

        class Loss(nn.Module):
            def __init__(self, scale=1.0):
                super().__init__()
                self.scale = scale

            def forward(self, out, y, x):
                return self.scale * out.sum()
        """))
    monkeypatch.syspath_prepend(str(tmp_path))


def test_a_users_loss_is_built_with_its_keys_and_as_it_is(make_cfg, mymodule):
    from dltrain.data.spec import DataSpec

    cfg = make_cfg("loss=mse", "loss._target_=mymodule.Loss", "+loss.scale=2.5")
    spec = DataSpec(name="x", task="classification", kind="vector", input_shape=(2,),
                    num_classes=2)
    loss = build_loss(cfg.loss, spec)  # on a classification task: the user's loss knows
    assert type(loss).__name__ == "Loss" and loss.scale == 2.5 and takes_inputs(loss)


def test_a_users_model_and_loss_train_alone_in_a_vectorised_sweep(make_cfg, mymodule):
    why = alone_reason(make_cfg("data=moons", "model._target_=mymodule.Net"))
    assert why == "model=mlp: not stacked (mymodule.Net does not declare itself stackable)"
    why = alone_reason(make_cfg("data=moons", "loss=mse", "loss._target_=mymodule.Loss"))
    assert why is not None and why.startswith("loss._target_=mymodule.Loss: your own loss")


def test_a_run_names_the_users_class_only_where_it_replaced_a_builtin_options():
    from dltrain.results import option_label

    # model=cnn with the user's class in place of dltrain's: the class, though its name
    # contains "cnn"
    assert option_label({"name": "cnn", "_target_": "mymodule.CNNPlus"}) == "mymodule.CNNPlus"
    # an option of the user's own (-cd DIR, DIR/model/small.yaml): its name
    assert option_label({"name": "small", "_target_": "mymodule.Net"}) == "small"
    assert option_label({"name": "mlp", "_target_": "dltrain.models.mlp.MLP"}) == "mlp"
    assert option_label({"name": "mse", "_target_": "mymodule.Loss"}, "loss") == "mymodule.Loss"
