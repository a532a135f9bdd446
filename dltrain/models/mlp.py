"""Multilayer perceptron: Linear -> [BatchNorm] -> activation -> [Dropout] per hidden layer."""

from __future__ import annotations

from torch import nn

from dltrain.errors import DltrainError
from dltrain.models import register_model

# identity: no non-linearity, so the stacked linear layers collapse into one affine map.
ACTIVATIONS = {
    "relu": nn.ReLU,
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "elu": nn.ELU,
    "selu": nn.SELU,
    "identity": nn.Identity,
}


@register_model("mlp", tasks=("regression", "binary", "multiclass"),
                input_kinds=("tabular", "image"), stackable=True)
class MLP(nn.Module):
    def __init__(self, in_features: int, output_size: int, hidden_sizes=(128, 64),
                 activation: str = "relu", dropout: float = 0.0, batch_norm: bool = False,
                 negative_slope: float = 0.01):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise DltrainError(
                f"model.activation '{activation}' is unknown; valid options are: {', '.join(ACTIVATIONS)}."
            )
        if isinstance(negative_slope, bool) or not isinstance(negative_slope, (int, float)) or negative_slope < 0:
            raise DltrainError(f"model.negative_slope (of leaky_relu) must be a number of at least 0, "
                               f"got {negative_slope!r}.")
        if not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
            raise DltrainError(f"model.dropout must be a number in [0, 1), got {dropout!r}.")
        sizes = list(hidden_sizes) if isinstance(hidden_sizes, (list, tuple)) else [None]
        if hidden_sizes is None:
            sizes = []
        if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in sizes):
            raise DltrainError(
                f"model.hidden_sizes must be a list of positive integers such as [64,32], got {hidden_sizes!r}."
            )
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for size in sizes:
            layers.append(nn.Linear(width, size))
            if batch_norm:
                layers.append(nn.BatchNorm1d(size))
            layers.append(nn.LeakyReLU(negative_slope) if activation == "leaky_relu"
                          else ACTIVATIONS[activation]())
            if dropout:
                layers.append(nn.Dropout(dropout))
            width = size
        layers.append(nn.Linear(width, output_size))
        self.layers = nn.Sequential(*layers)

    @classmethod
    def from_spec(cls, spec, output_size: int, hidden_sizes=(128, 64), activation: str = "relu",
                  dropout: float = 0.0, batch_norm: bool = False, negative_slope: float = 0.01):
        return cls(spec.in_features, output_size, hidden_sizes, activation, dropout, batch_norm, negative_slope)

    def forward(self, x):
        return self.layers(x)
