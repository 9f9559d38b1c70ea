"""build_model(cfg.model, cfg.init, spec): any model family, built from the DataSpec."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from dltrain.data.spec import DataSpec
from dltrain.models.init import apply_init
from dltrain.targets import call_target


def build_model(model_cfg: DictConfig, init_cfg: DictConfig, spec: DataSpec) -> nn.Module:
    """`Model(spec, **hyperparameters)` from the `_target_` of `model_cfg`, then initialised."""
    model = call_target(model_cfg, "model", spec=spec)
    apply_init(model, str(init_cfg.name), float(init_cfg.get("std", 0.02)))
    return model
