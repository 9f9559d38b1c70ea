"""The checks of neural operators' keys (data=darcy|burgers_operator, model=fno|deeponet,
probe=[field]: dltrain/data/operators/, dltrain/models/fno.py, deeponet.py,
dltrain/probes/field.py), torch-free like the rest of dltrain.config, which lists them among
its RULES."""

from __future__ import annotations

from dltrain.rules import Rule, integer, number

OPERATOR_RULES: tuple[Rule, ...] = (
    Rule("data.resolution", integer(8)),
    Rule("data.test_resolution", integer(8, optional=True)),
    Rule("data.viscosity", number(0.001)),  # below, fronts need thousands of solver points
    Rule("model.modes", integer(1)),
    Rule("model.basis", integer(1)),
    Rule("probe.field.samples", integer(1)),
    Rule("probe.field.every", integer(1, optional=True)),
)
