"""The loss for the task, the number of model outputs it needs, and how outputs become scores."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dltrain.checks import check_keywords
from dltrain.data.target import TargetTransform
from dltrain.errors import DltrainError
from dltrain.registry import one_of
from dltrain.train.losses import LOSSES

# loss=auto: not a loss of its own, but the one each task's registered loss is the default for.
AUTO = "auto"
# The settings that weigh the training loss, and the loss that takes each (loss=auto passes them on).
WEIGHTINGS = {"class_weights": "cross_entropy", "pos_weight": "bce"}


@dataclass
class Objective:
    """Ties a task to its loss: ``loss(outputs, targets)`` for training, ``scores(outputs)`` for
    metrics (regression values in the target's own units, or class probabilities)."""

    task: str
    loss_name: str
    output_size: int
    criterion: nn.Module  # the loss measured: validation, test, eval
    target: TargetTransform = TargetTransform()  # how a regression target was trained
    # The loss the training steps minimise where it differs: weighted by loss.class_weights or
    # loss.pos_weight (then train_loss is the weighted one, every other loss the plain one).
    training_criterion: nn.Module | None = None

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, *, training: bool = False) -> torch.Tensor:
        if self.output_size == 1:
            outputs = outputs.squeeze(-1)
            if self.task == "binary":
                targets = targets.to(outputs.dtype)
        if training and self.training_criterion is not None:
            return self.training_criterion(outputs, targets)
        return self.criterion(outputs, targets)

    def to(self, device) -> "Objective":
        """The criteria's class weights on ``device``, where the outputs are."""
        self.criterion.to(device)
        if self.training_criterion is not None:
            self.training_criterion.to(device)
        return self

    def scores(self, outputs: torch.Tensor) -> torch.Tensor:
        if self.task == "regression":
            return self.target.decode(outputs.squeeze(-1))
        if self.output_size == 1:
            return torch.sigmoid(outputs.squeeze(-1))
        probabilities = F.softmax(outputs, dim=-1)
        return probabilities[:, 1] if self.task == "binary" else probabilities

    def targets(self, targets: torch.Tensor) -> torch.Tensor:
        """Targets in their own units (undoing the training-time target transform)."""
        if self.task == "regression":
            return self.target.decode(targets)
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


def build_objective(name: str, options: dict, spec, train_targets: torch.Tensor | None = None) -> Objective:
    """Resolve ``loss=name`` (``auto`` picks by task) against the data's task. ``train_targets``:
    the encoded targets of the rows this objective trains on, from which loss.class_weights=auto
    and loss.pos_weight=auto are counted (None: built for evaluation, no training loss)."""
    task = spec.task
    options = dict(options)
    weighting = {key: options.pop(key, None) for key in WEIGHTINGS}
    weighting = {key: value for key, value in weighting.items() if value is not None}
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
    for key in weighting:
        if WEIGHTINGS[key] != name:
            raise DltrainError(_weighting_refusal(key, name, spec))
    check_keywords(entry.constructor, options, f"loss={name}", "loss")
    output_size = spec.num_classes if entry.output_size == "num_classes" else entry.output_size
    training = None
    if weighting and train_targets is not None:
        resolved = {key: _weights(key, value, spec, train_targets) for key, value in weighting.items()}
        training = entry(**options, **resolved)
    return Objective(task, name, output_size, entry(**options), TargetTransform.of(spec), training)


def _weighting_refusal(key: str, name: str, spec) -> str:
    """Why loss.KEY does not apply to loss=NAME on this data, and what would."""
    if spec.task == "regression":
        return f"loss.{key} weighs classification targets, but this data is a regression target; drop it."
    if key == "class_weights":
        return (f"loss.class_weights weighs the classes of loss=cross_entropy, but this {_describe(spec)} "
                f"data trains with loss={name}; use loss.pos_weight for its positive rows, or loss=cross_entropy.")
    return (f"loss.pos_weight weighs the positive rows of loss=bce (binary targets), but this "
            f"{_describe(spec)} data trains with loss={name}; use loss.class_weights.")


def _weights(key: str, value, spec, targets: torch.Tensor) -> torch.Tensor:
    """loss.class_weights (auto or one number per class) or loss.pos_weight (auto or a number)
    as the tensor the loss takes; auto counts ``targets``, the training rows' classes."""
    import math

    targets = targets.long().flatten()
    if key == "pos_weight":
        if value == "auto":
            positives = int(targets.sum())
            negatives = len(targets) - positives
            if not positives or not negatives:
                raise DltrainError(f"loss.pos_weight=auto weighs positive against negative rows, but the "
                                   f"{len(targets)} training rows are all {'negative' if not positives else 'positive'}; "
                                   f"give a number.")
            return torch.tensor([negatives / positives])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
            raise DltrainError(f"loss.pos_weight must be auto or a positive number, got {value!r}.")
        return torch.tensor([float(value)])
    classes = spec.num_classes
    if value == "auto":  # rows / (classes x rows of the class); a class with no training rows weighs nothing
        counts = torch.bincount(targets, minlength=classes).double()
        return torch.where(counts > 0, len(targets) / (classes * counts.clamp(min=1)), 0.0).float()
    numbers = list(value) if isinstance(value, (list, tuple)) else None
    if (numbers is None or len(numbers) != classes
            or not all(not isinstance(v, bool) and isinstance(v, (int, float)) and 0 <= v < math.inf for v in numbers)
            or not any(numbers)):
        names = f" ({', '.join(spec.class_names)})" if spec.class_names else ""
        raise DltrainError(f"loss.class_weights must be auto or a list of {classes} non-negative numbers, "
                           f"one per class{names}, not all zero; got {value!r}.")
    return torch.tensor([float(v) for v in numbers])


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
