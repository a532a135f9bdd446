"""Data the project generates: the course's y = 2x toy and the textbook's y = Xw + b + noise."""

from __future__ import annotations

from dltrain.checks import seed_option
from dltrain.data import register_dataset
from dltrain.data.spec import Source
from dltrain.errors import DltrainError


@register_dataset("linear_toy", kind="tabular")
def load_linear_toy(settings) -> Source:
    import pandas as pd

    from dltrain.data.tabular import frame_source

    features = pd.DataFrame({"x": [1.0, 2.0, 3.0]})
    target = pd.Series([2.0, 4.0, 6.0], name="y")
    return frame_source(features, target, settings.options, task="regression", target_name="y")


@register_dataset("synthetic_linear", kind="tabular")
def load_synthetic_linear(settings) -> Source:
    import numpy as np
    import pandas as pd

    from dltrain.data.tabular import frame_source

    options = settings.options
    weights = np.asarray(options.get("weights", [2.0, -3.4]), dtype=np.float64)
    num_samples = options.get("num_samples", 1000)
    if not isinstance(num_samples, int) or num_samples < 1:
        raise DltrainError(f"data.num_samples must be a positive integer, got {num_samples!r}.")
    if weights.ndim != 1 or weights.size == 0:
        raise DltrainError(f"data.weights must be a non-empty list of numbers, got {options.get('weights')!r}.")
    rng = np.random.default_rng(seed_option(options))
    x = rng.normal(size=(num_samples, weights.size))
    y = x @ weights + float(options.get("bias", 4.2))
    y = y + float(options.get("noise", 0.01)) * rng.normal(size=num_samples)
    features = pd.DataFrame(x, columns=[f"x{i}" for i in range(weights.size)])
    return frame_source(features, pd.Series(y, name="y"), options, task="regression", target_name="y")
