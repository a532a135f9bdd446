"""One affine layer: linear regression, logistic regression (binary) and softmax regression."""

from __future__ import annotations

import torch
from torch import nn

from dltrain.models import register_model


class _Affine(nn.Module):
    def __init__(self, in_features: int, output_size: int):
        super().__init__()
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(in_features, output_size)

    @classmethod
    def from_spec(cls, spec, output_size: int):
        return cls(spec.in_features, output_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.flatten(x))

    def describe(self, target=None) -> str | None:
        """The learned w and b, when there are few enough to read; with ``target`` (the
        TargetTransform a regression target was trained through) in the target's own units
        when the transform is affine, else said to be of the transformed target."""
        weight, bias = self.linear.weight.detach().cpu(), self.linear.bias.detach().cpu()
        if weight.numel() > 12:
            return None
        note = ""
        if target is not None and target.kind != "log":
            weight, bias = weight * target.std, bias * target.std + target.mean
        elif target is not None:
            note = " (predicting the standardized log of the target)"
        w = ", ".join(f"{v:.4f}" for v in weight.flatten().tolist())
        b = ", ".join(f"{v:.4f}" for v in bias.tolist())
        return f"w = [{w}], b = [{b}]{note}"


@register_model("linear", tasks=("regression",), input_kinds=("tabular", "image"), stackable=True)
class LinearRegression(_Affine):
    """y = xW + b, trained with a regression loss."""


@register_model("logistic", tasks=("binary",), input_kinds=("tabular", "image"), stackable=True)
class LogisticRegression(_Affine):
    """p(y=1 | x) = sigmoid(xw + b): emits the logit; the bce loss applies the sigmoid stably."""


@register_model("softmax", tasks=("multiclass", "binary"),
                input_kinds=("tabular", "image"), stackable=True)
class SoftmaxRegression(_Affine):
    """Multinomial logistic regression: one logit per class, softmax inside cross-entropy."""
