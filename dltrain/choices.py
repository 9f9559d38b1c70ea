"""What conf/ offers, as facts that need neither torch nor Hydra: where the config tree is,
the string choices of its keys, the probes and the loggers and what each does.

The rules that check a composed config against these are dltrain.config's; the torch-side
tables (activations, init schemes, ...) are tested to cover exactly these names.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

CONFIG_NAME = "train"


def conf_dir() -> Path:
    """The config tree: inside the installed package, else at the top of a source checkout."""
    package = Path(__file__).resolve().parent  # dltrain/
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / f"{CONFIG_NAME}.yaml").is_file():
            return candidate
    raise FileNotFoundError(f"dltrain's config tree (conf/{CONFIG_NAME}.yaml) is missing")


# String choices live here (not next to the torch code) so that validation needs no torch.
ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "gelu", "silu", "identity")
PRECISIONS = ("32", "bf16", "16")
INITS = ("default", "lecun", "xavier", "kaiming", "orthogonal", "normal")
POOLINGS = ("max", "avg", "none")  # model=cnn: the pooling after each conv block
READOUTS = ("mean", "cls")  # model=transformer: the tokens' mean or a class token
NORMS = ("layer", "none")  # model=transformer
CELLS = ("lstm", "gru", "rnn")  # model=rnn: nn.LSTM, nn.GRU, nn.RNN (Elman, tanh)
TASKS = ("classification", "regression", "language_model", "reconstruction", "pinn",
         "generation")
# What trainer.monitor can name: the validation loss or a metric of some task
# (losses.METRICS); whether the run's task measures it is checked when the job is built.
MONITORS = ("auto", "val/loss", "val/accuracy", "val/mse", "val/mae", "val/rmse", "val/r2",
            "val/rel_l2", "val/max_error", "val/perplexity", "val/fid")
# The probes, each with the options under which it looks only at the trained model, at a run's
# end, and never into training (None: it always looks into training). A vectorised stack runs
# such a probe for each of its members at the member's end; the others need a loop of their own.
PROBES: dict[str, dict[str, Any] | None] = {
    "activations": None,
    "gradients": None,
    "landscape": None,
    "boundary": None,
    "fit": {"images": False},
    "samples": None,
    "field": None,  # operator data: input, truth, prediction, error of a few test samples
}
PROBE_COMMON = ("every", "batch")  # keys of `probe` that all probes share
# The loggers (conf/logger/, a list: logger=[tensorboard,mlflow]); each one's keys are under
# logger.<name> and have their rules below. metrics.jsonl and summary.json are always written.
LOGGERS = ("tensorboard", "mlflow")


def chosen_loggers(cfg: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The loggers a config asks for, each with its keys: {"tensorboard": {"flush_secs": 10}}.

    A run directory written before the logger group became a list holds `logger.name`
    (tensorboard or none); `dltrain resume` of such a run reads it as that one logger."""
    node = cfg.get("logger") or {}
    if isinstance(node.get("name"), str):  # the old single choice
        return {} if node["name"] == "none" else {node["name"]: {}}
    return {str(name): dict(keys or {}) for name, keys in node.items()}


def looks_into_training(name: str, options: Mapping[str, Any]) -> bool:
    """Whether probe `name` with `options` (its node under `probe`) looks during training, not
    only at the trained model (see PROBES)."""
    at_end = PROBES.get(name)
    return at_end is None or any(options.get(k) != v for k, v in at_end.items())
