"""A stacked model's calls traced once and replayed: make_fx records the aten operations a
call dispatches (vmap's batching rules, the autograd engine's backward passes) and the trace
runs them without that per-operation Python (dltrain.vectorised.model says when)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch

log = logging.getLogger("dltrain")


def trace(fn: Callable[..., Any], args: tuple[Any, ...]) -> Callable[..., Any] | None:
    """`fn` traced on `args` (make_fx), or None where the tracer refuses it."""
    from torch.fx.experimental.proxy_tensor import make_fx

    try:
        traced = make_fx(fn)(*args)
    except Exception as err:  # any refusal: the untraced call computes the same
        log.info(f"the stack's {getattr(fn, '__name__', 'call')} is not traced "
                 f"({type(err).__name__}: "
                 f"{str(err).splitlines()[0] if str(err) else ''}); it runs untraced")
        return None
    drop_identity_views(traced)
    return traced


_VIEWS = (torch.ops.aten.view.default, torch.ops.aten.expand.default,
          torch.ops.aten._unsafe_view.default, torch.ops.aten.reshape.default)


def drop_identity_views(traced: Any) -> None:
    """Remove the views a trace recorded that change nothing (the same shape, strides and
    offset as their input: vmap's batching rules add many): each is a call per step, and
    a third of a small model's trace. The tensor they return is their input, same memory
    and layout, so reading or writing through either is the same."""
    graph = traced.graph
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target not in _VIEWS:
            continue
        source = node.args[0]
        before = getattr(source, "meta", {}).get("val")
        after = node.meta.get("val")
        if (isinstance(before, torch.Tensor) and isinstance(after, torch.Tensor)
                and before.shape == after.shape and before.stride() == after.stride()
                and before.storage_offset() == after.storage_offset()):
            node.replace_all_uses_with(source)
            graph.erase_node(node)
    traced.recompile()
