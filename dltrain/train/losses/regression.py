"""Regression losses: mean squared error, mean absolute error, Huber, smooth L1."""

from __future__ import annotations

from torch import nn

from dltrain.errors import DltrainError
from dltrain.train.losses import register_loss


@register_loss("mse", tasks=("regression",), output_size=1, default_for=("regression",))
def mse() -> nn.Module:
    return nn.MSELoss()


@register_loss("l1", tasks=("regression",), output_size=1)
def l1() -> nn.Module:
    return nn.L1Loss()


@register_loss("huber", tasks=("regression",), output_size=1)
def huber(delta: float = 1.0) -> nn.Module:
    if not isinstance(delta, (int, float)) or delta <= 0:
        raise DltrainError(f"loss.delta must be a positive number, got {delta!r}.")
    return nn.HuberLoss(delta=float(delta))


@register_loss("smooth_l1", tasks=("regression",), output_size=1)
def smooth_l1(beta: float = 1.0) -> nn.Module:
    """PyTorch's SmoothL1Loss: Huber's loss divided by ``beta`` (the same for beta = 1), l1 for 0."""
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
        raise DltrainError(f"loss.beta must be a number of at least 0, got {beta!r}.")
    return nn.SmoothL1Loss(beta=float(beta))
