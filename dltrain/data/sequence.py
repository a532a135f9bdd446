"""Numeric time series windowed into (past ``window`` values -> the value ``horizon`` steps
later) regression samples, from a CSV column or a generated seasonal series."""

from __future__ import annotations


import numpy as np

from dltrain.checks import seed_option
from dltrain.data import register_dataset
from dltrain.data.spec import Source
from dltrain.errors import DltrainError


class SeriesPreprocessor:
    """Standardizes the windows with the mean and std of the training windows' values and
    shapes them (rows, window, 1): one feature per step."""

    def __init__(self):
        self.mean, self.std = 0.0, 1.0
        self._window = 0

    def fit(self, features, target=None) -> "SeriesPreprocessor":
        values = np.asarray(features, dtype=np.float64)
        self.mean = float(values.mean())
        self.std = float(values.std()) or 1.0
        self._window = values.shape[1]
        return self

    def transform(self, features):
        import torch

        values = (np.asarray(features, dtype=np.float64) - self.mean) / self.std
        return torch.as_tensor(values, dtype=torch.float32).unsqueeze(-1)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (self._window, 1)

    def state(self) -> tuple[dict, dict]:
        """The fitted state as data: (JSON-able window, mean and std, no arrays)."""
        return {"window": self._window, "mean": self.mean, "std": self.std}, {}

    @classmethod
    def from_state(cls, state) -> "SeriesPreprocessor":
        """Rebuild from ``state`` (a dltrain.data.preprocessing.Fields reader)."""
        preprocessor = cls()
        preprocessor._window = state.integer("window", minimum=1)
        preprocessor.mean = state.number("mean")
        preprocessor.std = state.number("std", positive=True)
        return preprocessor


def generated_series(num_steps: int, seed: int, noise: float) -> np.ndarray:
    """A trend plus two seasons (periods 12 and 50) plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(num_steps, dtype=np.float64)
    return (0.01 * t + np.sin(2 * np.pi * t / 12) + 0.5 * np.sin(2 * np.pi * t / 50)
            + noise * rng.normal(size=num_steps))


def windows(series: np.ndarray, window: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of ``window`` consecutive values and, for each, the value ``horizon`` steps after it."""
    count = len(series) - window - horizon + 1
    if count < 2:
        raise DltrainError(
            f"The series has {len(series)} values, too few for data.window={window} and "
            f"data.horizon={horizon}; use a smaller window or a longer series."
        )
    index = np.arange(window)[None, :] + np.arange(count)[:, None]
    return series[index], series[index[:, -1] + horizon]


def _read_series(options) -> tuple[np.ndarray, list[str], dict]:
    """The series, the notes of reading its file (data.header=auto finding no header row) and how
    it was read (Source.reading)."""
    import pandas as pd

    from dltrain.data.tabular import header_notes, pick_column, read_csv_file

    frame, header = read_csv_file(options)
    name = pick_column(frame, options.get("column", -1), "column")
    values = pd.to_numeric(frame[name], errors="coerce")
    if values.isna().any():
        bad = frame[name][values.isna()].iloc[0]
        raise DltrainError(
            f"The column {str(name)!r} holds {values.isna().sum()} missing or non-numeric values (for "
            f"example {bad!r}); a time series needs a number on every row."
        )
    return values.to_numpy(dtype=np.float64), header_notes(options, header, frame), {"header": header}


@register_dataset("time_series", kind="sequence")
def load_time_series(settings) -> Source:
    options = settings.options
    numbers = {}
    for key, default in (("window", 24), ("horizon", 1)):
        number = options.get(key, default)
        if isinstance(number, bool) or not isinstance(number, int) or number < 1:
            raise DltrainError(f"data.{key} must be a positive integer, got {number!r}.")
        numbers[key] = number
    path = options.get("path")
    notes, reading = [], {}
    if path in (None, "", "???"):
        num_steps = options.get("num_steps", 1000)
        if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 10:
            raise DltrainError(f"data.num_steps must be an integer of at least 10, got {num_steps!r}.")
        series = generated_series(num_steps, seed_option(options), float(options.get("noise", 0.1)))
    else:
        series, notes, reading = _read_series(options)
    features, target = windows(series, numbers["window"], numbers["horizon"])
    return Source(
        features=features,
        target=target,
        task="regression",
        kind="sequence",
        make_preprocessor=SeriesPreprocessor,
        ordered=True,
        notes=notes,
        reading=reading,
    )
