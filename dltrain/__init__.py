"""dltrain: config-driven deep-learning training from the command line.

Importing the package is cheap on purpose: torch, tensorboard and matplotlib are imported by
the modules that need them, so `dltrain --help`, `dltrain list` and config errors stay fast.
`dltrain.load` and `dltrain.train` (the Python API) are looked up when first used.
"""

from __future__ import annotations

import importlib as _importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["load", "train"]

# name -> module that defines it: imported on first use, so `import dltrain` stays cheap
_API = {"load": "dltrain.use.api", "train": "dltrain.use.train"}

def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(_importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'dltrain' has no attribute {name!r}")
