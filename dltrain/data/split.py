"""Row selection and the train / validation split (stratified for classification)."""

from __future__ import annotations

import numpy as np

from dltrain.errors import DltrainError


def take(features, index):
    """Rows ``index`` of a DataFrame, array or tensor."""
    if hasattr(features, "iloc"):
        return features.iloc[index]
    return features[index]


def train_val_indices(source, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split row indices into train and validation; stratified by class for classification."""
    from sklearn.model_selection import train_test_split

    n = len(source)
    if n == 0:
        raise DltrainError("The dataset is empty: it has no rows to train on.")
    index = np.arange(n)
    if val_fraction == 0:
        return index, index[:0]
    val_count = int(round(n * val_fraction))
    if val_count < 1 or n - val_count < 1:
        raise DltrainError(
            f"data.val_fraction={val_fraction} leaves no rows for training or validation out of "
            f"{n}; use a value that gives each at least one row, or 0 for no validation."
        )
    if source.ordered:
        return index[: n - val_count], index[n - val_count:]
    stratify = None
    if source.task != "regression":
        counts = np.bincount(np.asarray(source.target, dtype=np.int64))
        counts = counts[counts > 0]
        # Stratifying needs every class twice and room in val for one of each class.
        if counts.min() >= 2 and val_count >= len(counts) and n - val_count >= len(counts):
            stratify = source.target
    train, val = train_test_split(
        index, test_size=val_count, random_state=seed, shuffle=True, stratify=stratify
    )
    return np.sort(train), np.sort(val)
