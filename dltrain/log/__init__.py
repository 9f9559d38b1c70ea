"""Loggers: one small interface, several sinks, and a no-op one instead of `if logger:` checks.

The trainer calls a logger at log points (every `trainer.log_every` steps) and at validations,
never per step, so a sink may be as slow as disk I/O without slowing training down.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class Logger(Protocol):
    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def log_histogram(self, tag: str, values: Any, step: int) -> None:
        """A distribution (a tensor or array of values), e.g. a layer's activations."""

    def log_image(self, tag: str, image: bytes | Any, step: int) -> None:
        """A picture: PNG bytes (a rendered figure) or an (H, W, C) array, uint8 or in [0, 1]."""

    def log_text(self, tag: str, text: str, step: int) -> None:
        """Markdown text, e.g. samples a language model generated."""

    def log_hparams(self, hparams: Mapping[str, Any], status: str) -> None:
        """The run's hyperparameters and how it ended (summary.json's status); called once, at
        the end, whatever the end was."""

    def close(self) -> None: ...


class NullLogger:
    """Accepts everything and does nothing; sinks extend it with what they support."""

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        pass

    def log_histogram(self, tag: str, values: Any, step: int) -> None:
        pass

    def log_image(self, tag: str, image: bytes | Any, step: int) -> None:
        pass

    def log_text(self, tag: str, text: str, step: int) -> None:
        pass

    def log_hparams(self, hparams: Mapping[str, Any], status: str) -> None:
        pass

    def close(self) -> None:
        pass


class Loggers(NullLogger):
    """Hands every call to each of several loggers."""

    def __init__(self, loggers: Sequence[Logger]) -> None:
        self.loggers = list(loggers)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for logger in self.loggers:
            logger.log_metrics(metrics, step)

    def log_histogram(self, tag: str, values: Any, step: int) -> None:
        for logger in self.loggers:
            logger.log_histogram(tag, values, step)

    def log_image(self, tag: str, image: bytes | Any, step: int) -> None:
        for logger in self.loggers:
            logger.log_image(tag, image, step)

    def log_text(self, tag: str, text: str, step: int) -> None:
        for logger in self.loggers:
            logger.log_text(tag, text, step)

    def log_hparams(self, hparams: Mapping[str, Any], status: str) -> None:
        for logger in self.loggers:
            logger.log_hparams(hparams, status)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
