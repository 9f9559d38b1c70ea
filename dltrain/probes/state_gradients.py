"""The gradient that reaches each time step of a recurrent net: ||dL/dh_t|| against t, the
vanishing gradient of back-propagation through time made visible (the gradients probe's part
for a model with `unrolled(x)`, dltrain/models/rnn.py).

h_t is the hidden state after step t of every layer and direction; its gradient is that of
the loss on the probe's fixed training batch, in eval mode, asked of autograd alone (no `.grad`
is written, no random number is drawn): training goes on exactly as without the probe.

Tags: `probe/gradients/state/step_<t>` (scalars, at most POSITIONS steps evenly spread from the
first to the last, t counted from 1) and the picture `probe/gradients/state` of every step.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from dltrain.data.spec import Split
from dltrain.probes.tags import GRADIENTS, tag

STATE = tag(GRADIENTS, "state")  # the picture; the scalars are STATE/step_<t>
POSITIONS = 16  # steps of a sequence that get a scalar of their own


def step_tag(t: int) -> str:
    """The scalar of step t (from 1): zero-padded, so that TensorBoard lists them in order."""
    return tag(STATE, f"step_{t:04d}")


def state_gradients(model: nn.Module, criterion: Callable[..., torch.Tensor], batch: Split
                    ) -> np.ndarray | None:
    """||dL/dh_t|| for t = 1..T on `batch` (float64, (T,)), or None for a model that has no
    states to show (no `unrolled`)."""
    unrolled = getattr(model, "unrolled", None)
    if unrolled is None:
        return None
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            out, states = unrolled(batch.x)
            loss = criterion(out, batch.y, batch.x)
            flat = [h for step in states for h in step]
            grads = torch.autograd.grad(loss, flat, allow_unused=True)
    finally:
        model.train(was_training)
    # one copy to the host, then float64: the squares of a vanished gradient (1e-30) are
    # below float32's range, and not every device has float64
    stacked = torch.stack([torch.zeros_like(h) if g is None else g.detach()
                           for h, g in zip(flat, grads, strict=True)]).cpu().double()
    per_step = stacked.view(len(states), -1).square().sum(dim=1).sqrt()
    return per_step.cpu().numpy()


def positions(length: int, count: int = POSITIONS) -> list[int]:
    """At most `count` steps (from 1) evenly spread over 1..length, both ends included."""
    spread = np.rint(np.linspace(1, length, min(length, count))).astype(int)
    return sorted(set(spread.tolist()))


def scalars(norms: np.ndarray) -> dict[str, float]:
    return {step_tag(t): float(norms[t - 1]) for t in positions(len(norms))}


def picture(norms: np.ndarray, step: int) -> bytes:
    """||dL/dh_t|| against t on a log scale."""
    from matplotlib.figure import Figure

    from dltrain.probes.plots import png

    fig = Figure(figsize=(6.4, 4.8), dpi=80)
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.11, top=0.92)
    ax = fig.subplots()
    ax.plot(np.arange(1, len(norms) + 1), norms, marker=".", color="C0")
    if (norms > 0).all():
        ax.set_yscale("log")
    ax.set_xlabel("time step t")
    ax.set_ylabel("||dL/dh_t||")
    ax.set_title(f"gradient reaching each time step · step {step}")
    ax.grid(alpha=0.3)
    return png(fig)
