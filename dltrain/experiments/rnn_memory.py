"""Recurrent memory (conf/experiment/rnn_memory.yaml): the plain RNN, the GRU and the LSTM on the
adding problem at growing lengths, the same budget for all; which of them beat the learned-nothing
baseline at which length, and the gradient that reaches the first time step (the gradients
probe's ||dL/dh_t||, probes/state_gradients.py)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from dltrain.experiments.figures import new_figure, to_png
from dltrain.experiments.readers import Run, read_metrics
from dltrain.experiments.section import Section
from dltrain.log.console import fmt
from dltrain.probes.tags import GRADIENTS, tag

# The gradients probe's scalars of a recurrent net: STEP_PREFIX + "0001" is ||dL/dh_1||
# (dltrain/probes/state_gradients.py step_tag; a test keeps the two in step)
STEP_PREFIX = tag(GRADIENTS, "state", "step_")
CELLS = ("rnn", "gru", "lstm")
SOLVED = 0.1  # a test mse under this fraction of the baseline's: the cell carried the values
NOTHING = 0.9  # at or above this fraction, it learned next to nothing

RNN_POINT = (
    "The vanishing gradient through time (Hochreiter 1991; Bengio et al. 1994) and the gates "
    "that answer it (Hochreiter & Schmidhuber 1997). In the adding problem the target is the "
    "sum of two values marked somewhere in a long sequence, the first in its first half: a net "
    "must carry that value in its state across half the sequence or more. A model that learned "
    "nothing predicts the mean and scores the target's variance, about 0.167. The plain (Elman) "
    "RNN multiplies its gradient by the same recurrent Jacobian at every step back, so "
    "||dL/dh_t|| falls geometrically with the distance from the end; the LSTM's additive cell "
    "state and the GRU's update gate give the gradient a path that is not squashed at every "
    "step. Every cell below has the same hidden size, optimiser, steps and gradient clipping.")


def state_profile(records: Sequence[Mapping[str, Any]], step: int | None = None
                  ) -> tuple[int, dict[int, float]] | None:
    """(probe step, {t: ||dL/dh_t||}) at `step`, or at the last probe point (None: none)."""
    found: dict[int, dict[int, float]] = {}
    for record in records:
        values = {int(k[len(STEP_PREFIX):]): float(v) for k, v in record.items()
                  if k.startswith(STEP_PREFIX)}
        if values:
            found.setdefault(int(record["step"]), {}).update(values)
    if not found:
        return None
    at = step if step is not None else max(found)
    return (at, dict(sorted(found[at].items()))) if at in found else None


def _first_to_last(profile: dict[int, float]) -> float:
    first, last = profile[min(profile)], profile[max(profile)]
    return first / last if last > 0 else math.nan


def rnn_memory(runs: Sequence[Run], keys: Sequence[str]) -> Section:
    rows: list[dict[str, Any]] = []
    profiles: dict[tuple[str, int], tuple[dict[int, float], dict[int, float] | None]] = {}
    for run in runs:
        records = read_metrics(run.path)
        cell, length = str(run.value("model.cell")), int(run.value("data.length"))
        test = run.summary.get("test") or {}
        mse, baseline = test.get("mse"), test.get("baseline_mse")
        start, end = state_profile(records, 0), state_profile(records)
        row: dict[str, Any] = {
            "cell": cell, "length": length, "test_mse": mse, "baseline_mse": baseline,
            "mse_over_baseline": mse / baseline if mse is not None and baseline else None}
        if start is not None:
            profiles[(cell, length)] = (start[1], end[1] if end and end[0] > 0 else None)
            row["grad_first_step_at_0"] = start[1][min(start[1])]
            row["first_over_last_at_0"] = _first_to_last(start[1])
        if end is not None and end[0] > 0:
            row["probe_step_end"] = end[0]
            row["grad_first_step_at_end"] = end[1][min(end[1])]
            row["first_over_last_at_end"] = _first_to_last(end[1])
        rows.append(row)
    order = {c: i for i, c in enumerate(CELLS)}
    rows.sort(key=lambda r: (order.get(r["cell"], len(CELLS)), r["cell"], r["length"]))
    return Section("rnn_memory", RNN_POINT, findings(rows), rows,
                   {"memory": figure(rows, profiles)})


def findings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Per cell: its mse against the baseline at each length, the lengths it solved, and the
    gradient that reached the first step."""
    out = []
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell and r["mse_over_baseline"] is not None]
        if not mine:
            continue
        groups = [("below a tenth of the learned-nothing baseline (solved) at",
                   [r["length"] for r in mine if r["mse_over_baseline"] < SOLVED]),
                  ("between a tenth and 90% of it at",
                   [r["length"] for r in mine if SOLVED <= r["mse_over_baseline"] < NOTHING]),
                  ("within 10% of it or above (it learned next to nothing) at",
                   [r["length"] for r in mine if r["mse_over_baseline"] >= NOTHING])]
        out.append(
            f"{cell}: test mse " + ", ".join(
                f"{fmt(r['test_mse'])} (baseline {fmt(r['baseline_mse'])}) at length "
                f"{r['length']}" for r in mine)
            + "; " + "; ".join(f"{words} {_lengths(lengths)}" for words, lengths in groups
                               if lengths) + ".")
        grads = [r for r in mine if r.get("grad_first_step_at_0") is not None]
        if grads:
            parts = []
            for r in grads:
                text = f"at length {r['length']}: {fmt(r['grad_first_step_at_0'])} at step 0"
                ratios = fmt(r["first_over_last_at_0"])
                if r.get("grad_first_step_at_end") is not None:
                    text += (f", {fmt(r['grad_first_step_at_end'])} after "
                             f"{r['probe_step_end']} steps")
                    ratios += f", {fmt(r['first_over_last_at_end'])}"
                parts.append(f"{text} ({ratios} of the last step's)")
            out.append(f"{cell}: the gradient reaching the first step, ||dL/dh_1||, "
                       + "; ".join(parts) + ".")
    return out


def _lengths(lengths: Sequence[int]) -> str:
    words = [str(n) for n in lengths]
    return "length " + words[0] if len(words) == 1 else \
        "lengths " + ", ".join(words[:-1]) + " and " + words[-1]


def figure(rows: Sequence[Mapping[str, Any]],
           profiles: Mapping[tuple[str, int], tuple[dict[int, float], dict[int, float] | None]]
           ) -> bytes:
    """Left: test mse over the baseline against length, per cell. Right: ||dL/dh_t|| against
    t at the longest length, at initialisation (dashed) and at the last probe point."""
    fig, axes = new_figure(1, 2)
    left, right = axes[0]
    cells = list(dict.fromkeys(r["cell"] for r in rows))
    for i, cell in enumerate(cells):
        mine = [r for r in rows if r["cell"] == cell and r["mse_over_baseline"]]
        if mine:
            left.plot([r["length"] for r in mine], [r["mse_over_baseline"] for r in mine],
                      marker="o", color=f"C{i}", label=cell)
        lengths = [n for c, n in profiles if c == cell]
        if lengths:
            longest = max(lengths)
            start, end = profiles[(cell, longest)]
            right.plot(list(start), list(start.values()), linestyle="--", color=f"C{i}",
                       label=f"{cell}, length {longest}, step 0")
            if end:
                right.plot(list(end), list(end.values()), color=f"C{i}",
                           label=f"{cell}, trained")
    left.axhline(1.0, color="0.4", linestyle=":", label="learned nothing")
    left.axhline(SOLVED, color="0.7", linestyle=":", label="a tenth of it")
    left.set_xlabel("sequence length")
    left.set_ylabel("test mse / baseline mse")
    left.set_title("adding problem: error against length")
    right.set_xlabel("time step t")
    right.set_ylabel("||dL/dh_t||")
    right.set_title("gradient reaching each step, longest sequences")
    for ax in (left, right):
        values = [y for line in ax.get_lines() for y in line.get_ydata() if y > 0]
        if values:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return to_png(fig)
