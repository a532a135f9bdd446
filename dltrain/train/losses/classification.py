"""Classification losses on logits: binary cross-entropy (one logit) and cross-entropy (one
logit per class)."""

from __future__ import annotations

from torch import nn

from dltrain.errors import DltrainError
from dltrain.train.losses import register_loss


@register_loss("bce", tasks=("binary",), output_size=1, default_for=("binary",))
def bce(pos_weight=None) -> nn.Module:
    """``pos_weight``: the weight of the positive rows' loss, a one-element tensor (objective.py
    resolves loss.pos_weight into it), or None."""
    return nn.BCEWithLogitsLoss(pos_weight=pos_weight)


@register_loss("cross_entropy", tasks=("multiclass", "binary"), output_size="num_classes",
               default_for=("multiclass",))
def cross_entropy(label_smoothing: float = 0.0, class_weights=None) -> nn.Module:
    """``class_weights``: a tensor of one weight per class (objective.py resolves
    loss.class_weights into it), or None."""
    if not isinstance(label_smoothing, (int, float)) or not 0 <= label_smoothing < 1:
        raise DltrainError(f"loss.label_smoothing must be a number in [0, 1), got {label_smoothing!r}.")
    return nn.CrossEntropyLoss(weight=class_weights, label_smoothing=float(label_smoothing))
