"""The layers of docs/architecture.md: a module imports only from its own layer or below.

Lower layers know nothing of the ones above: the trainer (train/) knows no model, data set,
config file or command; the assembly (job.py) knows no command; nothing below the command line
imports Hydra's application. A new module is placed in a layer here (the test fails until it
is), and docs/architecture.md says why it sits there.
"""

from __future__ import annotations

import pytest

from tests.test_imports import import_graph

# Layer by layer, bottom up; a module is named by its longest prefix here.
LAYERS: list[tuple[str, ...]] = [
    # 0: torch-free facts: errors, files, config rules, results, hyperparameters, tags, where
    # a run may be written and its directory's lock
    ("dltrain", "dltrain.errors", "dltrain.io", "dltrain.rules", "dltrain.choices",
     "dltrain.config", "dltrain.results", "dltrain.hparams", "dltrain.overrides",
     "dltrain.probes.tags", "dltrain.targets", "dltrain.outdir", "dltrain.lock",
     "dltrain.pinn.rules", "dltrain.generation.rules", "dltrain.operator_rules",
     "dltrain.step_tools"),  # (what a model-declared training step is given)
    # 1: the building blocks, each on its own: data, models, losses, optimisers, the machine
    ("dltrain.data", "dltrain.models", "dltrain.losses", "dltrain.optim", "dltrain.runtime",
     "dltrain.perf", "dltrain.log", "dltrain.adam_lbfgs",
     # the equations of physics-informed networks, their points and loss; generative
     # models' losses, feature network and fid
     "dltrain.pinn", "dltrain.generation"),
    # 2: the trainer: state, steps, decisions, the loop, checkpoints, resume, processes
    ("dltrain.training",),
    # 3: diagnostics that hook into the trainer
    ("dltrain.probes", "dltrain.pinn.field", "dltrain.pinn.report",
     "dltrain.generation.pictures"),
    # 4: assembly from a config, scoring, what a run writes
    ("dltrain.job", "dltrain.evaluate", "dltrain.rundir"),
    # 5: the two ways to train: one run, a vectorised stack
    ("dltrain.run", "dltrain.vectorised"),
    # 6: sweeps, reports and the lectures' experiments (files in, files out; torch-free)
    ("dltrain.report", "dltrain.experiments", "dltrain.sweep", "dltrain.sweep_report"),
    # 7: a finished run put to use: loaded, predicting, exported (files in, files out)
    ("dltrain.use", "dltrain.generation.draw", "dltrain.generation.measure"),
    # 8: the command line (Hydra's application)
    ("dltrain.cli", "dltrain.__main__"),
    # 9: training from Python, through the command line's own preflight
    ("dltrain.use.train",),
]


def layer_of(module: str) -> int:
    best, layer = "", -1
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > len(best):
                best, layer = prefix, i
    return layer


def test_every_module_has_a_layer():
    unplaced = sorted(m for m in import_graph() if layer_of(m) < 0)
    assert not unplaced, f"place these modules in a layer of tests/test_layers.py: {unplaced}"


def test_no_module_imports_from_a_layer_above_its_own():
    upward = sorted(f"{m} (layer {layer_of(m)}) imports {dep} (layer {layer_of(dep)})"
                    for m, deps in import_graph().items() for dep in deps
                    if layer_of(dep) > layer_of(m))
    assert not upward, "imports against the layers:\n" + "\n".join(upward)


@pytest.mark.parametrize("module", ["dltrain.training.loop", "dltrain.training.steps"])
def test_the_trainer_knows_no_model_data_set_or_config(module):
    deps = import_graph()[module]
    assert not {d for d in deps if d.startswith(("dltrain.models", "dltrain.config",
                                                 "dltrain.choices", "dltrain.job", "dltrain.cli"))}
