"""The checks of task=generation's keys (model=gan, model=diffusion, loss=wgan_gp and the
trainer's d_steps and fid keys), torch-free like the rest of dltrain.config, which lists them
among its RULES and COMBINATIONS."""

from __future__ import annotations

from typing import Any

from dltrain.rules import (
    SHARED,
    Check,
    Rule,
    boolean,
    choice,
    integer,
    number,
    pair,
    text,
)

GENERATORS = {"gan": "dltrain.models.gan.GAN", "diffusion": "dltrain.models.diffusion.Diffusion"}
PARTS = ("generator", "discriminator")  # model=gan's parts, each with its optimiser
GAN_LOSSES = ("auto", "wgan_gp")
DIFFUSION_LOSSES = ("auto", "mse", "mae", "huber")


def _or_null(check: Check) -> Check:
    """`check`, with null allowed (a part's optimiser key: null keeps the run's optim value)."""
    return lambda v: None if v is None else check(v)


GENERATION_RULES: tuple[Rule, ...] = (
    Rule("model.form", choice(("auto", "conv", "mlp"))),
    Rule("model.conditional", boolean),
    Rule("model.spectral_norm", boolean),
    *(rule for part in PARTS for rule in (
        Rule(f"model.optim.{part}.lr", _or_null(number(0, lo_open=True))),
        Rule(f"model.optim.{part}.betas", _or_null(pair(0, 1))))),
    Rule("model.timesteps", integer(2)),
    Rule("model.schedule", choice(("linear", "cosine"))),
    Rule("model.sampler", choice(("ddim", "ancestral"))),
    Rule("model.sample_steps", integer(1)),
    Rule("model.ema", number(0, 1)),
    Rule("model.clip", number(0, lo_open=True, optional=True)),
    Rule("loss.gp_weight", number(0)),
    Rule("trainer.d_steps", integer(1), SHARED),
    Rule("trainer.fid_samples", integer(2), SHARED),
    Rule("trainer.fid_cache", text(), SHARED),
)


def _get(cfg: dict[str, Any], key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _family(cfg: dict[str, Any]) -> str | None:
    """gan or diffusion when the model node builds dltrain's, else None."""
    target = _get(cfg, "model._target_")
    return next((name for name, t in GENERATORS.items() if t == target), None)


def _own(node: Any) -> bool:
    target = node.get("_target_") if isinstance(node, dict) else None
    return isinstance(target, str) and not target.startswith(("dltrain.", "torch."))


def generation_combination(cfg: dict[str, Any]) -> str | None:
    """What task=generation, model=gan|diffusion and loss=wgan_gp need of each other and of
    the trainer, in one sentence; None when the config holds together."""
    task, family = cfg.get("task"), _family(cfg)
    model, loss = cfg.get("model") or {}, str(_get(cfg, "loss.name"))
    if family and task != "generation":
        return (f"model={family} learns to generate samples: add task=generation (it takes "
                "labelled images, vectors or signals, e.g. data=glyphs)")
    if loss == "wgan_gp" and family != "gan":
        return "loss=wgan_gp trains a GAN's critic: use it with model=gan task=generation"
    if task != "generation":
        return None
    if family is None and not _own(model):
        return (f"task=generation needs a generative model, and model={model.get('name')} is "
                "not one; use model=gan or model=diffusion")
    fits = GAN_LOSSES if family == "gan" else DIFFUSION_LOSSES
    if family and not _own(cfg.get("loss")) and loss not in fits:
        return f"loss={loss} does not train model={family}; use loss={' or loss='.join(fits)}"
    trainer = cfg.get("trainer") or {}
    refusals = {
        "accumulate": (trainer.get("accumulate", 1) != 1, "trainer.accumulate=1 (a larger "
                       "data.batch_size instead)"),
        "precision": (str(trainer.get("precision")) == "16", "trainer.precision=32 or bf16"),
        "nan_policy": (trainer.get("nan_policy") == "skip", "trainer.nan_policy=stop"),
        "strategy": (trainer.get("strategy") == "ddp", "trainer.strategy=single"),
        "compile": (bool(trainer.get("compile")), "trainer.compile=false"),
    }
    for key, (refused, instead) in refusals.items():
        if refused:
            return (f"task=generation trains with its model's own step, which does not take "
                    f"trainer.{key}={trainer[key]}; use {instead}")
    if family == "gan":
        if model.get("latent") is None:
            return "model=gan needs the width of its noise: set model.latent, e.g. 64"
        return _part_optimisers(model, cfg.get("optim") or {})
    return None


def _part_optimisers(model: dict[str, Any], optim: dict[str, Any]) -> str | None:
    """A part's optimiser key must be one the run's optimiser takes."""
    for part, keys in (model.get("optim") or {}).items():
        if part not in PARTS:
            return (f"model.optim.{part} is not a part of model=gan; its parts are "
                    f"{' and '.join(PARTS)}")
        for key, value in (keys or {}).items():
            if value is not None and key not in optim:
                return (f"model.optim.{part}.{key} is set, but optim={optim.get('name')} has no "
                        f"{key}; set model.optim.{part}.{key}=null, or use an optimiser that "
                        "has it (optim=adam)")
    return None
