"""build_model(cfg.model, cfg.init, spec): any model family, built from the DataSpec.

For task=reconstruction a family is built in its encoder–decoder form (models/autoencoder.py),
with the same hyperparameters plus the bottleneck's (`latent`, `variational`).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf, open_dict
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.errors import ConfigError
from dltrain.models.init import apply_init
from dltrain.targets import call_target

# The encoder–decoder form of each family that has one, by the family's `_target_`.
AUTOENCODERS = {
    "dltrain.models.mlp.MLP": "dltrain.models.mlp.MLPAutoEncoder",
    "dltrain.models.cnn.CNN": "dltrain.models.cnn.CNNAutoEncoder",
}
BOTTLENECK_KEYS = ("latent", "variational")


def build_model(model_cfg: DictConfig, init_cfg: DictConfig, spec: DataSpec) -> nn.Module:
    """`Model(spec, **hyperparameters)` from the `_target_` of `model_cfg`, then initialised."""
    model = call_target(model_node(model_cfg, spec), "model", spec=spec)
    apply_init(model, str(init_cfg.name), float(init_cfg.get("std", 0.02)))
    return model


def model_node(model_cfg: DictConfig, spec: DataSpec) -> DictConfig:
    """The node to build for the task: the family's encoder–decoder form for reconstruction;
    otherwise the family itself, without the bottleneck keys (refused when set)."""
    name = model_cfg.get("name", model_cfg.get("_target_"))
    node = OmegaConf.create(OmegaConf.to_container(model_cfg, resolve=True))
    if spec.task == "reconstruction":
        form = AUTOENCODERS.get(str(model_cfg.get("_target_")))
        if form is None:
            families = " or ".join(f"model={t.split('.')[-1].lower()}" for t in AUTOENCODERS)
            raise ConfigError(f"model={name} has no encoder–decoder form for "
                              f"task=reconstruction (data={spec.name}); use {families}.")
        with open_dict(node):
            node._target_ = form
        return node
    if node.get("latent") is not None or node.get("variational"):
        raise ConfigError(f"model.latent and model.variational make model={name} an "
                          f"autoencoder, but data={spec.name} is a {spec.task} task; add "
                          "task=reconstruction, or leave model.latent=null and "
                          "model.variational=false.")
    with open_dict(node):
        for key in BOTTLENECK_KEYS:
            node.pop(key, None)
    return node
