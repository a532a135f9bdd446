"""The loss for the task, the number of model outputs it needs, and how outputs become scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dltrain.checks import check_keywords
from dltrain.errors import DltrainError
from dltrain.registry import one_of
from dltrain.train.losses import LOSSES

# loss=auto: not a loss of its own, but the one each task's registered loss is the default for.
AUTO = "auto"


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


class Predictor(nn.Module):
    """A model ending in its prediction, for use without dltrain (``dltrain export``): values in
    the target's own units (regression), or every class's probability (binary: [1 - p, p])."""

    def __init__(self, model: nn.Module, objective: Objective):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        scores = self.objective.scores(self.model(*inputs))
        if self.objective.task == "binary":
            scores = torch.stack([1 - scores, scores], dim=-1)
        return scores


def build_objective(name: str, options: dict, spec) -> Objective:
    """Resolve ``loss=name`` (``auto`` picks by task) against the data's task."""
    task = spec.task
    if name == AUTO:
        name = auto_loss(task)
    entry = LOSSES[name]
    if task not in entry.tasks:
        kind = "a regression loss" if entry.tasks == ("regression",) else \
            f"for {' or '.join(entry.tasks)} targets"
        default = auto_loss(task)
        serving = [default] + [e.name for e in LOSSES.where(tasks=task) if e.name != default]
        raise DltrainError(
            f"loss={name} is {kind}, but this data is {_describe(spec)}; "
            f"use loss={one_of(serving)} (or loss=auto)."
        )
    check_keywords(entry.constructor, options, f"loss={name}", "loss")
    output_size = spec.num_classes if entry.output_size == "num_classes" else entry.output_size
    return Objective(task, name, output_size, entry(**options), spec.target_mean, spec.target_std)


def auto_loss(task: str) -> str:
    """The loss ``loss=auto`` picks for a task: the registered one that is its default."""
    defaults = [entry.name for entry in LOSSES.where(default_for=task)]
    if len(defaults) != 1:
        raise RuntimeError(f"{len(defaults)} registered losses are the default for {task}: {defaults}")
    return defaults[0]


def _describe(spec) -> str:
    if spec.task == "regression":
        return "a regression target"
    return f"{spec.task} with {spec.num_classes} classes"
