"""A table of a model's layers: output shape and parameter count of each, and the total.

The shapes are measured, not derived: forward hooks record every layer's output on a dummy
batch built from the DataSpec (zeros, in eval mode and without gradients, so neither the
random state nor the batch-norm statistics of the run are touched).
"""

from __future__ import annotations

from typing import Any

import torch
from rich.table import Table
from torch import nn

from dltrain.data.spec import DataSpec


def dummy_batch(spec: DataSpec, n: int = 2, device: torch.device | str = "cpu") -> torch.Tensor:
    """A batch of `n` zero samples of the spec's input shape (token ids for text)."""
    dtype = torch.long if spec.kind == "tokens" else torch.float32
    return torch.zeros(n, *spec.input_shape, dtype=dtype, device=device)


def _rows(model: nn.Module, max_depth: int) -> list[tuple[str, nn.Module]]:
    """Named modules to show: leaves, and every module at `max_depth` (its subtree summed).

    Placeholders (an Identity where an option is off, an empty Sequential) are left out.
    """
    rows = []
    for name, module in model.named_modules():
        if not name:
            continue
        depth = name.count(".") + 1
        is_leaf = next(module.children(), None) is None
        placeholder = isinstance(module, nn.Identity) or (
            is_leaf and isinstance(module, (nn.Sequential, nn.ModuleList)))
        if placeholder:
            continue
        if depth == max_depth or (depth < max_depth and is_leaf):
            rows.append((name, module))
    return rows


def _shape(out: Any) -> tuple[int, ...] | None:
    if isinstance(out, (tuple, list)) and out:
        out = out[0]
    return tuple(out.shape[1:]) if isinstance(out, torch.Tensor) else None


def _count(params: Any) -> int:
    return sum(p.numel() for p in params)


def layer_table(model: nn.Module, spec: DataSpec, max_depth: int = 3) -> Table:
    """Rows of layer, type, output shape (per sample) and parameters, then the total."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    rows = _rows(model, max_depth)
    shapes: dict[str, tuple[int, ...] | None] = {}

    def record(name: str):
        def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
            shapes[name] = _shape(out)
        return hook

    handles = [module.register_forward_hook(record(name)) for name, module in rows]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(dummy_batch(spec, device=device))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()

    table = Table(title=f"{type(model).__name__} on {spec.name}", title_justify="left")
    table.add_column("layer")
    table.add_column("type")
    table.add_column("output shape", justify="right")
    table.add_column("params", justify="right")
    for name, module in rows:
        shape = shapes.get(name)
        shown = " x ".join(map(str, shape)) if shape else "-"
        table.add_row(name, type(module).__name__, shown, f"{_count(module.parameters()):,}")
    # parameters held by a module above the shown depth (not inside any row's subtree)
    shown_params = {id(p) for _, module in rows for p in module.parameters()}
    loose = [(n, p) for n, p in model.named_parameters() if id(p) not in shown_params]
    for name, param in loose:
        table.add_row(name, "Parameter", " x ".join(map(str, param.shape)), f"{param.numel():,}")
    total = _count(model.parameters())
    trainable = _count(p for p in model.parameters() if p.requires_grad)
    table.add_section()
    label = "total" if trainable == total else f"total ({trainable:,} trainable)"
    table.add_row(label, "", "", f"{total:,}", style="bold")
    return table
