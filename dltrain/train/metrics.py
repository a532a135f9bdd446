"""Metrics per task, computed once per epoch from all scores of a split. Macro F1 and R² are
computed from counts here (scikit-learn's input validation costs more than an epoch of a small
model; tests/test_metrics.py checks they equal scikit-learn's); ROC AUC is scikit-learn's."""

from __future__ import annotations

import math

import numpy as np

from dltrain.errors import DltrainError

METRICS = {
    "regression": ("mse", "mae", "r2", "log_rmse"),
    "binary": ("accuracy", "roc_auc"),
    "multiclass": ("accuracy", "macro_f1"),
}
HIGHER_IS_BETTER = {"accuracy", "roc_auc", "macro_f1", "r2"}


def compute(task: str, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """``scores``: predictions in target units (regression), P(class 1) (binary) or class
    probabilities (multiclass)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return _compute(task, scores, targets)


def _compute(task: str, scores: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    if not np.all(np.isfinite(scores)):
        return {name: math.nan for name in METRICS[task]}
    if task == "regression":
        result = {
            "mse": float(np.mean((scores - targets) ** 2)),
            "mae": float(np.mean(np.abs(scores - targets))),
        }
        result["r2"] = r2(scores, targets) if len(targets) > 1 else math.nan
        result["log_rmse"] = log_rmse(scores, targets)
        return result
    if task == "binary":
        predicted = (scores >= 0.5).astype(np.int64)
        auc = math.nan
        if len(np.unique(targets)) == 2:
            from sklearn import metrics

            auc = float(metrics.roc_auc_score(targets, scores))
        return {"accuracy": float(np.mean(predicted == targets)), "roc_auc": auc}
    predicted = scores.argmax(axis=1)
    return {
        "accuracy": float(np.mean(predicted == targets)),
        "macro_f1": macro_f1(predicted, targets),
    }


def macro_f1(predicted: np.ndarray, targets: np.ndarray) -> float:
    """The unweighted mean F1 over the classes present in targets or predictions (scikit-learn's
    ``f1_score(average="macro", zero_division=0)``)."""
    targets = np.asarray(targets, dtype=np.int64).ravel()
    predicted = np.asarray(predicted, dtype=np.int64).ravel()
    size = int(max(targets.max(initial=0), predicted.max(initial=0))) + 1
    true_positive = np.bincount(targets[predicted == targets], minlength=size)
    actual = np.bincount(targets, minlength=size)
    guessed = np.bincount(predicted, minlength=size)
    present = (actual + guessed) > 0
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (actual + guessed); 0 where a class was never right
    f1 = 2 * true_positive[present] / (actual[present] + guessed[present])
    return float(f1.mean()) if len(f1) else 0.0


def r2(predictions: np.ndarray, targets: np.ndarray) -> float:
    """The coefficient of determination (scikit-learn's ``r2_score``: 1.0 for a perfect fit of
    constant targets, 0.0 for an imperfect one)."""
    targets = np.asarray(targets, dtype=np.float64).ravel()
    predictions = np.asarray(predictions, dtype=np.float64).ravel()
    residual = float(np.sum((targets - predictions) ** 2))
    total = float(np.sum((targets - targets.mean()) ** 2))
    if total == 0:
        return 1.0 if residual == 0 else 0.0
    return 1.0 - residual / total


def log_rmse(predictions: np.ndarray, targets: np.ndarray) -> float:
    """sqrt(mean((log max(prediction, 1) - log target)^2)): relative error for positive targets
    such as prices (Dive into Deep Learning's house-prices metric); nan when a target is <= 0."""
    targets = np.asarray(targets, dtype=np.float64)
    if len(targets) == 0 or not np.all(targets > 0):
        return math.nan
    predictions = np.maximum(np.asarray(predictions, dtype=np.float64), 1.0)
    return float(np.sqrt(np.mean((np.log(predictions) - np.log(targets)) ** 2)))


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
