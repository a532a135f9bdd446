"""Metrics per task, computed once per epoch from all scores of a split (scikit-learn)."""

from __future__ import annotations

import math

import numpy as np

from dltrain.errors import DltrainError

METRICS = {
    "regression": ("mse", "mae", "r2"),
    "binary": ("accuracy", "roc_auc"),
    "multiclass": ("accuracy", "macro_f1"),
}
HIGHER_IS_BETTER = {"accuracy", "roc_auc", "macro_f1", "r2"}


def compute(task: str, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``scores``: predictions in target units (regression), P(class 1) (binary) or class
    probabilities (multiclass)."""
    from sklearn import metrics

    if task == "regression":
        result = {
            "mse": float(np.mean((scores - targets) ** 2)),
            "mae": float(np.mean(np.abs(scores - targets))),
        }
        result["r2"] = float(metrics.r2_score(targets, scores)) if len(targets) > 1 else math.nan
        return result
    if task == "binary":
        predicted = (scores >= 0.5).astype(np.int64)
        auc = math.nan
        if len(np.unique(targets)) == 2:
            auc = float(metrics.roc_auc_score(targets, scores))
        return {"accuracy": float(np.mean(predicted == targets)), "roc_auc": auc}
    predicted = scores.argmax(axis=1)
    return {
        "accuracy": float(np.mean(predicted == targets)),
        "macro_f1": float(metrics.f1_score(targets, predicted, average="macro", zero_division=0)),
    }


def monitor_mode(metric: str, mode: str) -> str:
    """'min' or 'max' for a monitored metric when mode is 'auto'."""
    if mode != "auto":
        return mode
    return "max" if metric in HIGHER_IS_BETTER else "min"


def check_monitor(metric: str, task: str) -> None:
    valid = ("loss", *METRICS[task])
    if metric not in valid:
        raise DltrainError(
            f"trainer.monitor '{metric}' is not measured for {task} targets; choose one of: "
            f"{', '.join(valid)}."
        )
