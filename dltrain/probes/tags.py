"""Where the probes' numbers and pictures go: their TensorBoard tags (the keys of metrics.jsonl,
too) and the one file of theirs that a sweep's report reads.

Torch-free, like the package's __init__, on purpose: the report's experiment sections
(dltrain/experiments/) read what the probes logged without loading torch, and take the names
from here, so that a probe and the report that reads it cannot drift apart.
"""

from __future__ import annotations

ACTIVATIONS = "probe/activations"  # <layer>/mean, <layer>/std, <layer>/dead; histogram <layer>
GRADIENTS = "probe/gradients"  # <layer>/norm, <layer>/update_ratio, total_norm; histogram <layer>
WEIGHTS = "probe/weights"  # histogram <layer>
BOUNDARY = "probe/boundary"  # image
FIT = "probe/fit"  # image; train_mse, test_mse
LANDSCAPE = "probe/landscape"  # image
SAMPLES = "probe/samples"  # text
RECONSTRUCTION = "probe"  # the autoencoder's pictures: probe/<picture>

FIT_FILE = "fit.npz"  # the fit probe's numbers of the final weights, in the run directory


def tag(*parts: str) -> str:
    """A tag from its parts: tag(ACTIVATIONS, "fc1", "std") is `probe/activations/fc1/std`."""
    return "/".join(parts)
