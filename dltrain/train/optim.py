"""Optimizers, learning-rate schedulers and regularization (weight decay and L1 on weights only)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from dltrain.checks import check_keywords
from dltrain.errors import DltrainError

OPTIMIZERS = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "rmsprop": torch.optim.RMSprop,
    "adagrad": torch.optim.Adagrad,
}


@dataclass
class Regularizer:
    """The L1 part of regularization: ``penalty()`` is added to the loss each step."""

    l1: float = 0.0
    weights: list = field(default_factory=list)

    def penalty(self):
        return self.l1 * sum(w.abs().sum() for w in self.weights)


def weights_and_others(model) -> tuple[list, list]:
    """Weight matrices and kernels (decayed) apart from biases and norm parameters (not decayed)."""
    decay, no_decay = [], []
    for parameter in model.parameters():
        if parameter.requires_grad:
            (decay if parameter.ndim >= 2 else no_decay).append(parameter)
    return decay, no_decay


def build_optimizer(model, settings, regularization) -> tuple[torch.optim.Optimizer, Regularizer]:
    """``settings``: OptimizerSettings; ``regularization``: NamedSettings (none, l2, l1, elastic)."""
    cls = OPTIMIZERS[settings.name]
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in settings.options.items()}
    if "weight_decay" in options:
        raise DltrainError("Set weight decay with regularization=l2 regularization.weight_decay=VALUE "
                           "(it then spares biases and norm parameters), not optimizer.weight_decay.")
    check_keywords(cls, options, f"optimizer={settings.name}", "optimizer")
    weight_decay = float(regularization.options.get("weight_decay", 0.0))
    if regularization.name not in ("l2", "elastic"):
        weight_decay = 0.0
    decay, no_decay = weights_and_others(model)
    if weight_decay:
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        groups = [g for g in groups if g["params"]]
    else:  # one group: one fused update per step instead of two
        groups = [{"params": decay + no_decay, "weight_decay": 0.0}]
    try:
        optimizer = cls(groups, lr=settings.lr, **options)
    except (ValueError, TypeError, IndexError) as error:
        raise DltrainError(f"optimizer={settings.name} rejected its settings: {error}.") from None
    l1 = float(regularization.options.get("l1", 0.0)) if regularization.name in ("l1", "elastic") else 0.0
    return optimizer, Regularizer(l1=l1, weights=decay if l1 else [])


@dataclass
class Schedule:
    """A scheduler and when it steps: after every batch (onecycle) or every epoch (the rest)."""

    scheduler: object = None
    per_batch: bool = False
    needs_metric: bool = False

    def after_batch(self) -> None:
        if self.scheduler is not None and self.per_batch:
            self.scheduler.step()

    def after_epoch(self, monitored_value: float) -> None:
        if self.scheduler is None or self.per_batch:
            return
        if self.needs_metric:
            self.scheduler.step(monitored_value)
        else:
            self.scheduler.step()


def build_schedule(optimizer, settings, *, epochs: int, steps_per_epoch: int, mode: str) -> Schedule:
    """``settings``: NamedSettings for the scheduler group."""
    from torch.optim import lr_scheduler

    name, options = settings.name, dict(settings.options)
    factories = {
        "none": lambda: None,
        "step": lambda step_size=10, gamma=0.1: lr_scheduler.StepLR(optimizer, step_size, gamma),
        "cosine": lambda eta_min=0.0: lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min),
        "plateau": lambda factor=0.1, patience=5: lr_scheduler.ReduceLROnPlateau(
            optimizer, mode=mode, factor=factor, patience=patience),
        "onecycle": lambda max_lr_factor=10.0, pct_start=0.3: lr_scheduler.OneCycleLR(
            optimizer, max_lr=[g["lr"] * max_lr_factor for g in optimizer.param_groups],
            total_steps=epochs * steps_per_epoch, pct_start=pct_start),
    }
    factory = factories[name]
    check_keywords(factory, options, f"scheduler={name}", "scheduler")
    try:
        scheduler = factory(**options)
    except (ValueError, TypeError, ZeroDivisionError) as error:
        raise DltrainError(f"scheduler={name} rejected its settings: {error}.") from None
    return Schedule(scheduler, per_batch=name == "onecycle", needs_metric=name == "plateau")
