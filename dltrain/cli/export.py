"""`dltrain export RUN_DIR --format onnx|torchscript|safetensors [--out FILE]`: its arguments
and exit codes. The work is dltrain.use.export's, imported once the arguments are read (so
`--help` and a bad format stay light)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
Export a finished run's best weights (else its last) to a file that runs without dltrain.
onnx and torchscript hold the whole way from raw inputs to the data's own units: the input
normalisation, the model, and class probabilities or un-standardised regression values; the
batch axis is dynamic. safetensors holds the model's weights, with model.json beside them
(the spec, how the model is built, the normalisation, features, categories, class names and
target statistics). The export is checked against the run's own model on 64 test samples
(drawn from the normalisation statistics when the run's data cannot be read any more) and
kept only if it agrees to 1e-4; otherwise nothing is written and the exit code is 1.
onnx needs `pip install 'dltrain[export]'` (onnx, onnxscript, onnxruntime; safetensors too)."""

EXAMPLES = """\
examples:
  dltrain export outputs/runs/RUN --format onnx          # RUN/export/model.onnx
  dltrain export outputs/runs/RUN --format torchscript --out model.pt
  dltrain export outputs/runs/RUN --format safetensors   # model.safetensors + model.json"""


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="dltrain export", description=DESCRIPTION,
                                epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN_DIR", type=Path, help="the run's directory")
    p.add_argument("--format", required=True, metavar="FORMAT",
                   help="onnx, torchscript or safetensors")
    p.add_argument("--out", type=Path, default=None, metavar="FILE",
                   help="where to write (default RUN_DIR/export/model.onnx, model.pt or "
                        "model.safetensors)")
    return p


def export(args: list[str]) -> int:
    """`dltrain export RUN_DIR --format F [--out FILE]`: see DESCRIPTION.

    Exit codes: 0 written and checked; 2 a bad argument, a run directory without a checkpoint
    or a missing package (the user's to fix); 1 the export itself failed — the exporter
    refused the model or the file computes something else than the run's model. That is a
    failure of the tool, as a training run that fails is, not a bad input, hence 1, not 2.
    """
    ns = parser().parse_args(args)
    from dltrain.use.export import check_format

    check_format(ns.format)  # a typo or a missing package before torch loads the run
    from dltrain.results import EXIT_FAILED
    from dltrain.use.export import ExportMismatch, export_run

    try:
        exported = export_run(ns.run_dir, ns.format, ns.out)
    except ExportMismatch as err:
        print(f"dltrain: export failed: {err}", file=sys.stderr)
        return EXIT_FAILED
    print(exported.line())
    return 0
