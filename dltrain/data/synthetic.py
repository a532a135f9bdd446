"""Data the project generates: the course's y = 2x toy, the textbook's y = Xw + b + noise and its
polynomial-fitting cubic, and scikit-learn's two moons (a problem no linear model solves)."""

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


@register_dataset("polynomial", kind="tabular")
def load_polynomial(settings) -> Source:
    """The textbook's cubic ("Model Selection, Underfitting, and Overfitting"): x ~ N(0, 1),
    y = 5 + 1.2x - 3.4x²/2! + 5.6x³/3! + N(0, noise²); one feature x, which
    data.polynomial_degree expands into x, x²/2!, ..., x^d/d! (the model's bias is the x^0 term)."""
    import numpy as np
    import pandas as pd

    from dltrain.data.tabular import frame_source

    options = settings.options
    num_samples = options.get("num_samples", 200)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 2:
        raise DltrainError(f"data.num_samples must be a whole number of at least 2, got {num_samples!r}.")
    rng = np.random.default_rng(seed_option(options))
    x = rng.normal(size=num_samples)
    y = 5 + 1.2 * x - 3.4 * x ** 2 / 2 + 5.6 * x ** 3 / 6
    y = y + float(options.get("noise", 0.1)) * rng.normal(size=num_samples)
    return frame_source(pd.DataFrame({"x": x}), pd.Series(y, name="y"), options, task="regression",
                        target_name="y")


@register_dataset("moons", kind="tabular")
def load_moons(settings) -> Source:
    """scikit-learn's two interleaving half circles: two features, two classes that no straight
    line separates (for showing what a non-linearity adds)."""
    import pandas as pd
    from sklearn.datasets import make_moons

    from dltrain.data.tabular import frame_source

    options = settings.options
    num_samples = options.get("num_samples", 1000)
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 4:
        raise DltrainError(f"data.num_samples must be a whole number of at least 4, got {num_samples!r}.")
    x, y = make_moons(num_samples, noise=float(options.get("noise", 0.2)), random_state=seed_option(options))
    target = pd.Series(["upper" if label == 0 else "lower" for label in y], name="moon", dtype=object)
    return frame_source(pd.DataFrame(x, columns=["x0", "x1"]), target, options, task="binary",
                        target_name="moon")
