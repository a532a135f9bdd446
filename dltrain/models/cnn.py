"""Convolutional network: [conv -> (batch norm) -> ReLU -> (pool)] per channel entry, flatten,
(hidden linear layers), linear to the outputs. The default is the course's basic MNIST CNN."""

from __future__ import annotations

import torch
from torch import nn

from dltrain.errors import DltrainError
from dltrain.models import register_model


def positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def int_list(name: str, value, *, allow_empty: bool = False) -> list[int]:
    """A list of positive integers from the config, or one sentence naming the setting."""
    values = list(value) if isinstance(value, (list, tuple)) else None
    if values is None or (not values and not allow_empty) or not all(positive_int(v) for v in values):
        example = "[32,64]"
        raise DltrainError(f"model.{name} must be a list of positive integers such as {example}, got {value!r}.")
    return values


def check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise DltrainError(f"model.dropout must be a number in [0, 1), got {dropout!r}.")
    return float(dropout)


def image_shape(spec, model: str) -> tuple[int, int, int]:
    if len(spec.input_shape) != 3:
        raise DltrainError(
            f"model={model} needs images shaped (channels, height, width), but this data's input "
            f"shape is {tuple(spec.input_shape)}."
        )
    return tuple(spec.input_shape)


def output_side(side: int, kernel: int, stride: int, padding: int) -> int:
    return (side + 2 * padding - kernel) // stride + 1


def resolve_padding(padding, kernel_size: int, side: int, depth: int, *, stride: int = 1,
                    pool_size: int = 2) -> int:
    """``same`` keeps the size (kernel_size // 2); ``auto`` is the course's valid convolutions (0)
    when the image is large enough for ``depth`` conv (+ pool) layers, else ``same``, so that
    small images such as the 8x8 digits work out of the box; an integer is used as given."""
    if padding == "same":
        return kernel_size // 2
    if padding == "auto":
        for _ in range(depth):
            side = output_side(side, kernel_size, stride, 0)
            if pool_size and side >= pool_size:
                side //= pool_size
            if side < 1:
                return kernel_size // 2
        return 0
    if isinstance(padding, int) and not isinstance(padding, bool) and padding >= 0:
        return padding
    raise DltrainError(f"model.padding must be auto, same or a non-negative integer, got {padding!r}.")


@torch.no_grad()
def flatten_size(features: nn.Module, input_shape) -> int:
    """Features per image after ``features``: computed by running one blank image through the
    layers, never typed by hand."""
    was_training = features.training
    features.eval()
    size = features(torch.zeros(1, *input_shape)).numel()
    features.train(was_training)
    return size


POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d, "none": None}


@register_model("cnn", tasks=("regression", "binary", "multiclass"),
                input_kinds=("image",), stackable=True)
class CNN(nn.Module):
    def __init__(self, input_shape: tuple[int, int, int], output_size: int, channels=(10, 20),
                 kernel_size: int = 5, padding="auto", stride: int = 1, pool: str = "max",
                 pool_size: int = 2, batch_norm: bool = False, dropout: float = 0.0,
                 hidden_sizes=()):
        super().__init__()
        channels = int_list("channels", channels)
        hidden_sizes = int_list("hidden_sizes", hidden_sizes or [], allow_empty=True)
        for name, number in (("kernel_size", kernel_size), ("stride", stride), ("pool_size", pool_size)):
            if not positive_int(number):
                raise DltrainError(f"model.{name} must be a positive integer, got {number!r}.")
        if pool not in POOLS:
            raise DltrainError(f"model.pool must be one of max, avg, none; got {pool!r}.")
        dropout = check_dropout(dropout)
        in_channels, height, width = input_shape
        pad = resolve_padding(padding, kernel_size, min(height, width), len(channels), stride=stride,
                              pool_size=pool_size if pool != "none" else 0)

        layers: list[nn.Module] = []
        for index, out_channels in enumerate(channels):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size, stride, pad, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU())
            height, width = (output_side(s, kernel_size, stride, pad) for s in (height, width))
            if POOLS[pool] is not None and min(height, width) >= pool_size:
                layers.append(POOLS[pool](pool_size))
                height, width = height // pool_size, width // pool_size
            if min(height, width) < 1:
                raise DltrainError(
                    f"model=cnn shrinks the {input_shape[1]}x{input_shape[2]} images to nothing at "
                    f"convolution {index + 1} (kernel_size={kernel_size}, padding={pad}, stride={stride}); "
                    f"use fewer model.channels, a smaller kernel_size or model.padding=same."
                )
            in_channels = out_channels
        self.features = nn.Sequential(*layers)
        self.flatten_size = flatten_size(self.features, input_shape)
        head: list[nn.Module] = [nn.Flatten()]
        size = self.flatten_size
        for hidden in hidden_sizes:
            if dropout:
                head.append(nn.Dropout(dropout))
            head += [nn.Linear(size, hidden), nn.ReLU()]
            size = hidden
        if dropout:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(size, output_size))
        self.head = nn.Sequential(*head)

    @classmethod
    def from_spec(cls, spec, output_size: int, channels=(10, 20), kernel_size: int = 5,
                  padding="auto", stride: int = 1, pool: str = "max", pool_size: int = 2,
                  batch_norm: bool = False, dropout: float = 0.0, hidden_sizes=()):
        return cls(image_shape(spec, "cnn"), output_size, channels, kernel_size, padding, stride,
                   pool, pool_size, batch_norm, dropout, hidden_sizes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
