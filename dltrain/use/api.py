"""`dltrain.load(RUN_DIR)`: a finished run in a notebook, predicting in the data's own units.

    import dltrain
    m = dltrain.load("outputs/runs/2024-05-01_12-00-00")
    m.predict(frame)        # a DataFrame in: the same table `dltrain predict` writes
    m.predict(x)            # an array or tensor (N, *m.spec.input_shape): numpy out
    m.model, m.spec, m.config, m.summary
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dltrain.errors import ConfigError
from dltrain.use import predict as out
from dltrain.use.inputs import Inputs, array_x, read_input, series_facts, series_inputs, table_x
from dltrain.use.loaded import LoadedRun, load_run

if TYPE_CHECKING:
    import pandas as pd
    from omegaconf import DictConfig

    from dltrain.data.spec import DataSpec


class Predictor:
    """A run's model with its normalisation, answering in the data's units.

    `model` is the trained network (eval mode), which takes inputs normalised as training
    gave them; `in_units` wraps it between the input normalisation and the way back into the
    data's units (raw inputs in), as `predict` uses it and the exports hold it.
    """

    def __init__(self, run: LoadedRun) -> None:
        self.run = run

    @property
    def model(self) -> torch.nn.Module:
        return self.run.model

    @property
    def in_units(self) -> torch.nn.Module:
        return self.run.in_units

    @property
    def spec(self) -> DataSpec:
        return self.run.spec

    @property
    def config(self) -> DictConfig:
        """The run's resolved config (`m.config.optim.lr`)."""
        from omegaconf import OmegaConf

        return OmegaConf.create(self.run.config)

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json of the run ({} if it never wrote one)."""
        return self.run.summary

    @property
    def run_dir(self) -> Path:
        return self.run.run_dir

    @property
    def classes(self) -> tuple[str, ...]:
        """Class names, in the order of the probability columns (classification)."""
        return self.run.spec.class_names

    def __repr__(self) -> str:
        spec = self.run.spec
        return (f"<dltrain run {self.run.run_dir}: {spec.task} on {spec.name}, inputs "
                f"{tuple(spec.input_shape)}, {self.run.checkpoint.name} on {self.run.device}>")

    def predict(self, x: Any, *, batch_size: int = out.BATCH_SIZE, every_window: bool = False,
                length: int = 200, temperature: float = 1.0, seed: int = 0) -> Any:
        """Predictions in the data's own units, as `dltrain predict` gives them.

        - a pandas DataFrame (a table's rows; a series, one row a time step): a DataFrame,
          its own columns followed by the predictions, the table `dltrain predict` writes;
        - a numpy array or torch tensor (N, *spec.input_shape) of raw inputs: numpy, the
          class probabilities (N, K) for classification, the values for regression ((N,) for
          one output, (N, outputs), or (N, *target_shape)), the forecast (N, channels,
          horizon) of windows (N, channels, window) for a series;
        - a path (str or Path) to a file or folder: as `dltrain predict RUN_DIR PATH`, a
          DataFrame where the predictions make a table, else the arrays of the .npz;
        - a prompt (str) for a language model: the prompt and `length` characters after it.
        """
        import pandas as pd

        run = self.run
        if run.spec.task == "language_model":
            if not isinstance(x, str):
                raise ConfigError(f"A language model continues a prompt (a str), not a "
                                  f"{type(x).__name__}.")
            return out.generate(run, x, length, temperature, seed)
        if isinstance(x, str | Path):
            return self._shown(read_input(run, str(x), every_window), batch_size)
        if isinstance(x, pd.DataFrame):
            if series_facts(run) is not None:
                inputs = series_inputs(run, x, "the DataFrame", every_window)
            else:
                inputs = Inputs(table_x(run, x, "the DataFrame"), "the DataFrame", table=x)
            return self._laid_out(inputs, batch_size).table
        if isinstance(x, torch.Tensor):
            x = x.detach().cpu().numpy()
        if not isinstance(x, np.ndarray):
            raise ConfigError(f"predict takes a numpy array, a torch tensor, a pandas DataFrame "
                              f"or a path, not a {type(x).__name__}.")
        y = out.values(run, array_x(run, x, "the array"), batch_size)
        series = series_facts(run)
        if series is not None:
            return y.reshape(len(y), len(series["channels"]), int(series["horizon"]))
        if run.spec.task == "regression" and y.ndim == 2 and y.shape[1] == 1:
            return y[:, 0]  # one output: (N,), as the targets it is compared with
        return y

    def _laid_out(self, inputs: Inputs, batch_size: int) -> out.Predictions:
        return out.lay_out(self.run, inputs, out.values(self.run, inputs.x, batch_size))

    def _shown(self, inputs: Inputs, batch_size: int) -> pd.DataFrame | dict[str, np.ndarray]:
        laid = self._laid_out(inputs, batch_size)
        return laid.table if laid.table is not None else laid.arrays


def load(run_dir: str | Path, device: str = "cpu") -> Predictor:
    """The run in `run_dir` (its best weights, else its last) on `device` (cpu, cuda, cuda:N,
    mps or auto), rebuilt from its checkpoint alone: no training data is read."""
    return Predictor(load_run(run_dir, device))
