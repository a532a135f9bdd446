"""GoogLeNet-style network: stages of [conv -> ReLU -> max-pool -> Inception block(s)], then a
linear layer. The default is the course's MNIST net (conv, Inception, conv, Inception, linear)."""

from __future__ import annotations

import torch
from torch import nn

from dltrain.errors import DltrainError
from dltrain.models import register_model
from dltrain.models.cnn import (check_dropout, flatten_size, image_shape, int_list, output_side,
                                positive_int, resolve_padding)


def conv_unit(in_channels: int, out_channels: int, kernel_size: int, batch_norm: bool,
              padding: int = 0) -> nn.Sequential:
    """Convolution, optional batch norm, ReLU: the unit every branch is built from."""
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding,
                                         bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class InceptionBlock(nn.Module):
    """Four parallel branches concatenated on the channel axis; 1x1 convolutions reduce the
    channels before the large kernels so the block stays cheap:

    - 1x1
    - 1x1 -> 5x5
    - 1x1 -> 3x3 -> 3x3
    - 3x3 average pool -> 1x1

    ``branch_channels`` are the four branches' output widths (the course's 16, 24, 24, 24 make
    88 channels), ``reduce_channels`` the width of the 1x1 reductions (16)."""

    def __init__(self, in_channels: int, branch_channels=(16, 24, 24, 24), reduce_channels: int = 16,
                 batch_norm: bool = False):
        super().__init__()
        one, five, three, pool = branch_channels
        self.branch1x1 = conv_unit(in_channels, one, 1, batch_norm)
        self.branch5x5 = nn.Sequential(
            conv_unit(in_channels, reduce_channels, 1, batch_norm),
            conv_unit(reduce_channels, five, 5, batch_norm, padding=2),
        )
        self.branch3x3 = nn.Sequential(
            conv_unit(in_channels, reduce_channels, 1, batch_norm),
            conv_unit(reduce_channels, three, 3, batch_norm, padding=1),
            conv_unit(three, three, 3, batch_norm, padding=1),
        )
        self.branch_pool = nn.Sequential(
            nn.AvgPool2d(3, stride=1, padding=1),
            conv_unit(in_channels, pool, 1, batch_norm),
        )
        self.out_channels = one + five + three + pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1x1(x), self.branch5x5(x), self.branch3x3(x), self.branch_pool(x))
        return torch.cat(branches, dim=1)


@register_model("inception", tasks=("regression", "binary", "multiclass"),
                input_kinds=("image",), stackable=True)
class InceptionNet(nn.Module):
    """``stages`` lists the width of each stage's leading convolution (the course: [10, 20]);
    each stage is conv(kernel_size) -> ReLU -> 2x2 max-pool -> ``blocks`` Inception blocks.
    ``global_pool`` averages each channel before the linear layer (for larger inputs)."""

    def __init__(self, input_shape, output_size: int, stages=(10, 20), blocks: int = 1,
                 branch_channels=(16, 24, 24, 24), reduce_channels: int = 16, kernel_size: int = 5,
                 padding="auto", batch_norm: bool = False, dropout: float = 0.0,
                 global_pool: bool = False):
        super().__init__()
        stages = int_list("stages", stages)
        branch_channels = int_list("branch_channels", branch_channels)
        if len(branch_channels) != 4:
            raise DltrainError(
                f"model.branch_channels must list the 4 branch widths (1x1, 5x5, 3x3, pool), got {branch_channels!r}."
            )
        for name, number in (("blocks", blocks), ("reduce_channels", reduce_channels),
                             ("kernel_size", kernel_size)):
            if not positive_int(number):
                raise DltrainError(f"model.{name} must be a positive integer, got {number!r}.")
        dropout = check_dropout(dropout)
        in_channels, height, width = input_shape
        pad = resolve_padding(padding, kernel_size, min(height, width), len(stages))
        layers: list[nn.Module] = []
        side = min(height, width)
        for index, stage_width in enumerate(stages):
            layers.append(conv_unit(in_channels, stage_width, kernel_size, batch_norm, padding=pad))
            side = output_side(side, kernel_size, 1, pad)
            if side < 1:
                raise DltrainError(
                    f"model=inception shrinks the {height}x{width} images to nothing at stage "
                    f"{index + 1} (kernel_size={kernel_size}, padding={pad}); use fewer model.stages "
                    f"or model.padding=same."
                )
            if side >= 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            in_channels = stage_width
            for _ in range(blocks):
                block = InceptionBlock(in_channels, branch_channels, reduce_channels, batch_norm)
                layers.append(block)
                in_channels = block.out_channels
        if global_pool:
            layers.append(nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.flatten_size = flatten_size(self.features, input_shape)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout) if dropout else nn.Identity(),
                                  nn.Linear(self.flatten_size, output_size))

    @classmethod
    def from_spec(cls, spec, output_size: int, stages=(10, 20), blocks: int = 1,
                  branch_channels=(16, 24, 24, 24), reduce_channels: int = 16, kernel_size: int = 5,
                  padding="auto", batch_norm: bool = False, dropout: float = 0.0,
                  global_pool: bool = False):
        return cls(image_shape(spec, "inception"), output_size, stages, blocks, branch_channels,
                   reduce_channels, kernel_size, padding, batch_norm, dropout, global_pool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
