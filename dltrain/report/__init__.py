"""The report of a sweep: what each configuration scored, with seeds as error bars.

Plain functions over plain data, in four steps: read the jobs (jobs.py), group them into
configurations (aggregate.py), render the table, CSV and markdown (render.py) and the plots
(plots.py), and write the files (write.py). A sweep directory holds one directory per job, each
with `.hydra/overrides.yaml`, `.hydra/config.yaml` and `summary.json`; nothing else is read, so
the report needs neither torch nor Hydra. Jobs that differ only in a seed key (`trainer.seed`)
are one configuration: its objective and test metrics are given as mean ± sample standard
deviation over those runs, with their number n.

Written into the sweep directory: report.csv (one row per configuration), runs.csv (one row per
run), report.md, best.yaml (the best configuration and how to run it again) and plots/ (the
objective against each swept key, PNG). The report knows neither the lectures' experiments nor
TensorBoard: dltrain/sweep_report.py adds an experiment's section and the sweep's TensorBoard
run to what is written here.
"""

from __future__ import annotations

from dltrain.report.aggregate import Report, Row, Stat, aggregate, exit_code, swept_keys
from dltrain.report.jobs import Job, find_jobs, parse_value, read_job, read_sweep
from dltrain.report.plots import plot_objective, write_plots
from dltrain.report.render import (
    SEARCH_KEYS,
    best_config,
    failure_lines,
    objective_label,
    print_report,
    rich_table,
    runs_csv,
    to_csv,
    to_markdown,
)
from dltrain.report.write import Written, write_report, write_text

__all__ = [
    "SEARCH_KEYS",
    "Job",
    "Report",
    "Row",
    "Stat",
    "Written",
    "aggregate",
    "best_config",
    "exit_code",
    "failure_lines",
    "find_jobs",
    "objective_label",
    "parse_value",
    "plot_objective",
    "print_report",
    "read_job",
    "read_sweep",
    "rich_table",
    "runs_csv",
    "swept_keys",
    "to_csv",
    "to_markdown",
    "write_plots",
    "write_report",
    "write_text",
]
