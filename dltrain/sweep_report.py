"""A sweep's whole report: the report files, a lecture's experiment section, the sweep's
TensorBoard run, and the table printed.

The report (dltrain/report/), the experiments (dltrain/experiments/) and TensorBoard
(dltrain/log/tensorboard.py) know nothing of each other; this is where they meet, for both
callers: the end of a multirun (dltrain/sweep.py) and `dltrain report` (dltrain/cli/runs.py).
Torch-free and Hydra-free, like all three.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from dltrain.experiments import write_section
from dltrain.log.tensorboard import write_sweep_run
from dltrain.report import Report, print_report, write_report, write_text


def write_sweep_report(sweep_dir: Path, console: Console | None = None) -> Report:
    """Write the report files, add the experiment's section (experiment=NAME) to report.md,
    write the TensorBoard run of the sweep (SWEEP_DIR/tb) and print the table; return the
    report. A section or a TensorBoard run that cannot be made is a note under the table,
    never a reason to lose the report."""
    sweep_dir = Path(sweep_dir)
    written = write_report(sweep_dir)
    report, markdown = written.report, written.markdown
    images, problems = dict(written.images), list(written.problems)
    try:  # a lecture's experiment adds its section, figures and experiment.csv below the table
        section = write_section(report, images)
    except Exception as err:  # like a plot: a view of the sweep, never a reason to lose it
        problems.append(f"no experiment section: {type(err).__name__}: {err}")
    else:
        if section:
            markdown += section
            write_text(sweep_dir / "report.md", markdown)
    try:
        write_sweep_run(sweep_dir / "tb", images, {"report": markdown})
    except Exception as err:
        problems.append(f"no TensorBoard run: {type(err).__name__}: {err}")
    if console is None:
        from rich import get_console

        console = get_console()
    print_report(report, console, problems)
    return report
