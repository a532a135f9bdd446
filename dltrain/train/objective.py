"""The loss for the task, the number of model outputs it needs, and how outputs become scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dltrain.checks import check_keywords
from dltrain.errors import DltrainError

REGRESSION_LOSSES = ("mse", "l1", "huber")
AUTO_LOSS = {"regression": "mse", "binary": "bce", "multiclass": "cross_entropy"}


def _mse() -> nn.Module:
    return nn.MSELoss()


def _l1() -> nn.Module:
    return nn.L1Loss()


def _huber(delta: float = 1.0) -> nn.Module:
    if not isinstance(delta, (int, float)) or delta <= 0:
        raise DltrainError(f"loss.delta must be a positive number, got {delta!r}.")
    return nn.HuberLoss(delta=float(delta))


def _bce() -> nn.Module:
    return nn.BCEWithLogitsLoss()


def _cross_entropy(label_smoothing: float = 0.0) -> nn.Module:
    if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
        raise DltrainError(f"loss.label_smoothing must be a number in [0, 1), got {label_smoothing!r}.")
    return nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))


LOSSES = {"mse": _mse, "l1": _l1, "huber": _huber, "bce": _bce, "cross_entropy": _cross_entropy}


@dataclass
class Objective:
    """Ties a task to its loss: ``loss(outputs, targets)`` for training, ``scores(outputs)`` for
    metrics (regression values in the target's own units, or class probabilities)."""

    task: str
    loss_name: str
    output_size: int
    criterion: nn.Module
    target_mean: float = 0.0
    target_std: float = 1.0

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if self.output_size == 1:
            outputs = outputs.squeeze(-1)
            if self.task == "binary":
                targets = targets.to(outputs.dtype)
        return self.criterion(outputs, targets)

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.task == "regression":
            return outputs.squeeze(-1) * self.target_std + self.target_mean
        if self.output_size == 1:
            return torch.sigmoid(outputs.squeeze(-1))
        probabilities = F.softmax(outputs, dim=-1)
        return probabilities[:, 1] if self.task == "binary" else probabilities

    def targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets in their own units (undoing the training-time standardization)."""
        if self.task == "regression":
            return targets * self.target_std + self.target_mean
        return targets


def build_objective(name: str, options: dict, spec) -> Objective:
    """Resolve ``loss=name`` (``auto`` picks by task) against the data's task."""
    task = spec.task
    if name == "auto":
        name = AUTO_LOSS[task]
    if name in REGRESSION_LOSSES and task != "regression":
        raise DltrainError(
            f"loss={name} is a regression loss, but this data is {_describe(spec)}; "
            f"use loss={AUTO_LOSS[task]} (or loss=auto)."
        )
    if name == "bce" and task != "binary":
        raise DltrainError(
            f"loss=bce is for binary targets, but this data is {_describe(spec)}; "
            f"use loss={AUTO_LOSS[task]} (or loss=auto)."
        )
    if name == "cross_entropy" and task == "regression":
        raise DltrainError(
            "loss=cross_entropy is for classes, but this data is a regression target; "
            "use loss=mse, l1 or huber (or loss=auto)."
        )
    factory = LOSSES[name]
    check_keywords(factory, options, f"loss={name}", "loss")
    output_size = spec.num_classes if name == "cross_entropy" else 1
    return Objective(task, name, output_size, factory(**options), spec.target_mean, spec.target_std)


def _describe(spec) -> str:
    if spec.task == "regression":
        return "a regression target"
    return f"{spec.task} with {spec.num_classes} classes"
