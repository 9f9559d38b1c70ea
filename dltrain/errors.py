"""Exceptions that carry the outcome of a run to the command line's exit code."""

from __future__ import annotations


class ConfigError(ValueError):
    """Bad config or bad input: one clear sentence for the user; the command exits with 2."""


class DivergedError(RuntimeError):
    """Training produced a non-finite loss; the command exits with 1."""
