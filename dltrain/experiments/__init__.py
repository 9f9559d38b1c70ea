"""The lectures' experiments (conf/experiment/): what each adds to its sweep's report.

A sweep run as `dltrain -m experiment=NAME` gets, below the usual table, a section that states
the lecture's point and shows it with the sweep's own numbers: figures in plots/, the numbers
behind them in experiment.csv, and sentences with the measured values in report.md.

One module per lecture (init_study, capacity: overfitting, double descent and bias-variance,
optimizers, resnet_vs_plain, rnn_memory), over what the runs left (readers.py: metrics.jsonl
under the probes' tags, fit.npz), with shared pieces in section.py and figures.py; write.py puts the
section into the report. Plain functions over plain data: the jobs of a sweep
(dltrain.report.Job). No torch, no Hydra; matplotlib only where a figure is drawn.
"""

from __future__ import annotations

from dltrain.experiments.readers import Run
from dltrain.experiments.section import Section
from dltrain.experiments.write import (
    EXPERIMENTS,
    experiment_of,
    experiment_section,
    write_section,
)

__all__ = ["EXPERIMENTS", "Run", "Section", "experiment_of", "experiment_section", "write_section"]
