"""scikit-learn's bundled datasets (no download): digits, iris, wine, breast_cancer, diabetes."""

from __future__ import annotations

from dltrain.data import register_dataset
from dltrain.data.spec import Source
from dltrain.errors import DltrainError

_TASKS = {
    "digits": "multiclass",
    "iris": "multiclass",
    "wine": "multiclass",
    "breast_cancer": "binary",
    "diabetes": "regression",
}


# Decorators apply bottom up: digits registers first, so hints name it first.
@register_dataset("iris", "wine", "breast_cancer", "diabetes", kind="tabular")
@register_dataset("digits", kind="tabular", as_sequence=True)
def load_bundled(settings) -> Source:
    import pandas as pd

    if settings.name == "digits" and settings.options.get("as_sequence", False):
        # The 64 pixels as 8 rows of 8 (for model=lstm): the sequence view of digits_images.
        from dltrain.data.vision import load_digits_images

        if settings.options.get("polynomial_degree", 1) != 1:
            raise DltrainError("data.polynomial_degree expands a table's features, but data.as_sequence=true "
                               "reads the digits as rows of pixels; use one of them.")

        return load_digits_images(settings)
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{settings.name}")()
    features = pd.DataFrame(bunch.data, columns=[str(n) for n in bunch.feature_names])
    task = _TASKS[settings.name]
    if task == "regression":
        target = pd.Series(bunch.target, name="target", dtype="float64")
    else:
        names = [str(n) for n in getattr(bunch, "target_names", range(bunch.target.max() + 1))]
        target = pd.Series([names[code] for code in bunch.target], name="target", dtype=object)
    from dltrain.data.tabular import frame_source

    return frame_source(features, target, settings.options, task=task)
