"""dltrain: config-driven deep-learning training from the command line.

Importing the package is cheap on purpose: torch, tensorboard and matplotlib are imported by
the modules that need them, so `dltrain --help`, `dltrain list` and config errors stay fast.
"""

__version__ = "0.1.0"
