"""build_model(cfg.model, cfg.init, spec): any model family, built from the DataSpec.

For task=reconstruction a family is built in its encoder–decoder form (models/autoencoder.py),
with the same hyperparameters plus the bottleneck's (`latent`, `variational`).

The builders read their nodes as plain mappings (`node["key"]`): every key has its default in
conf/ and its check in dltrain.config.RULES, so none is defaulted again here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from dltrain.config import own_code, plain
from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.init import apply_init
from dltrain.models.rnn import init_recurrent
from dltrain.pinn.network import physics_ready
from dltrain.targets import call_target

# The encoder–decoder form of each family that has one, by the family's `_target_`.
AUTOENCODERS = {
    "dltrain.models.mlp.MLP": "dltrain.models.mlp.MLPAutoEncoder",
    "dltrain.models.cnn.CNN": "dltrain.models.cnn.CNNAutoEncoder",
}
BOTTLENECK_KEYS = ("latent", "variational")
# The families that generate samples (task=generation), which refuse every other task.
GENERATORS = ("dltrain.models.gan.GAN", "dltrain.models.diffusion.Diffusion")


def build_model(model_cfg: Mapping[str, Any], init_cfg: Mapping[str, Any], spec: DataSpec
                ) -> nn.Module:
    """`Model(spec, **hyperparameters)` from the `_target_` of `model_cfg`, then initialised."""
    model = call_target(model_node(model_cfg, spec), "model", spec=spec)
    scheme = str(init_cfg["name"])
    # Only init=normal has a `std` (conf/init/normal.yaml): every other scheme takes its scale
    # from the layer's fans, or keeps PyTorch's.
    std = float(init_cfg["std"]) if scheme == "normal" else None
    apply_init(model, scheme, std)
    init_recurrent(model, scheme, std)  # nn.LSTM, nn.GRU, nn.RNN: per gate
    return physics_ready(model, spec.learned) if spec.task == "pinn" else model


def model_node(model_cfg: Mapping[str, Any], spec: DataSpec) -> dict[str, Any]:
    """The node to build for the task: the family's encoder–decoder form for reconstruction;
    otherwise the family itself, without the bottleneck keys (refused when set)."""
    name, target = model_cfg["name"], str(model_cfg["_target_"])
    node = plain(model_cfg)
    if spec.task == "generation" and target not in GENERATORS and not own_code(model_cfg):
        raise ConfigError(f"model={name} does not generate samples: task=generation "
                          f"(data={spec.name}) takes model=gan or model=diffusion.")
    if target in GENERATORS:  # their `latent` is the noise's width: no bottleneck keys here
        return node
    if spec.task == "reconstruction":
        form = AUTOENCODERS.get(target)
        if form is None:
            families = " or ".join(f"model={t.split('.')[-1].lower()}" for t in AUTOENCODERS)
            raise ConfigError(f"model={name} has no encoder–decoder form for "
                              f"task=reconstruction (data={spec.name}); use {families}.")
        return {**node, "_target_": form}
    # Only the families with an encoder–decoder form (conf/model/mlp.yaml, cnn.yaml) have the
    # bottleneck keys; the others' nodes lack them, which is the same as leaving them unset.
    if node.get("latent") is not None or node.get("variational"):
        raise ConfigError(f"model.latent and model.variational make model={name} an "
                          f"autoencoder, but data={spec.name} is a {spec.task} task; add "
                          "task=reconstruction, or leave model.latent=null and "
                          "model.variational=false.")
    return {k: v for k, v in node.items() if k not in BOTTLENECK_KEYS}
