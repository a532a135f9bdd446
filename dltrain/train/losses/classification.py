"""Classification losses on logits: binary cross-entropy (one logit) and cross-entropy (one
logit per class)."""

from __future__ import annotations

from torch import nn

from dltrain.errors import DltrainError
from dltrain.train.losses import register_loss


@register_loss("bce", tasks=("binary",), output_size=1, default_for=("binary",))
def bce() -> nn.Module:
    return nn.BCEWithLogitsLoss()


@register_loss("cross_entropy", tasks=("multiclass", "binary"), output_size="num_classes",
               default_for=("multiclass",))
def cross_entropy(label_smoothing: float = 0.0) -> nn.Module:
    if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
        raise DltrainError(f"loss.label_smoothing must be a number in [0, 1), got {label_smoothing!r}.")
    return nn.CrossEntropyLoss(label_smoothing=float(label_smoothing))
