"""Residual networks: a block (two 3x3 convolutions plus a shortcut), and two networks built from
it: the course's small MNIST ResNet (default) and ResNet-18/34 stage layouts for small images."""

from __future__ import annotations

import torch
from torch import nn

from dltrain.errors import DltrainError
from dltrain.models import register_model
from dltrain.models.cnn import (check_dropout, flatten_size, image_shape, int_list, output_side,
                                positive_int, resolve_padding)

# Blocks per stage of torchvision's ResNet-18 and ResNet-34 (BasicBlock).
STAGE_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}


def _norm(channels: int, batch_norm: bool) -> nn.Module:
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class ResidualBlock(nn.Module):
    """relu(F(x) + shortcut(x)) with F = conv3x3 -> [BN] -> ReLU -> conv3x3 -> [BN]; the shortcut
    is the identity, or a 1x1 projection when the stride or the channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, batch_norm: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=not batch_norm)
        self.norm1 = _norm(out_channels, batch_norm)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=not batch_norm)
        self.norm2 = _norm(out_channels, batch_norm)
        self.relu = nn.ReLU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=not batch_norm),
                _norm(out_channels, batch_norm),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return self.relu(y + self.shortcut(x))


@register_model("resnet", tasks=("regression", "binary", "multiclass"),
                input_kinds=("image",), stackable=True)
class ResNet(nn.Module):
    """``depth`` null: the course's small ResNet, one stage per ``channels`` entry, each
    conv(kernel_size) -> [BN] -> ReLU -> 2x2 max-pool -> ``blocks`` residual blocks, then flatten
    and a linear layer. ``depth`` 18 or 34: torchvision's stage layouts adapted to small images
    (3x3 stem, no initial max-pool, stages of ``width`` x 1, 2, 4, 8 channels, global average
    pool), as used for CIFAR. ``batch_norm`` null means off for the course's net, on for 18/34."""

    def __init__(self, input_shape, output_size: int, depth=None, channels=(16, 32), blocks: int = 1,
                 kernel_size: int = 5, padding="auto", width: int = 64, batch_norm=None,
                 dropout: float = 0.0):
        super().__init__()
        dropout = check_dropout(dropout)
        for name, number in (("blocks", blocks), ("kernel_size", kernel_size), ("width", width)):
            if not positive_int(number):
                raise DltrainError(f"model.{name} must be a positive integer, got {number!r}.")
        if batch_norm is None:
            batch_norm = depth is not None  # the course's net has none; deep stacks need it
        if not isinstance(batch_norm, bool):
            raise DltrainError(f"model.batch_norm must be true, false or null (on for depth 18/34), got {batch_norm!r}.")
        if depth is None:
            self.features = self._small(input_shape, int_list("channels", channels), blocks,
                                        kernel_size, padding, batch_norm)
        elif depth in STAGE_BLOCKS:
            self.features = self._deep(input_shape[0], STAGE_BLOCKS[depth], width, batch_norm)
        else:
            raise DltrainError(f"model.depth must be null (the course's small ResNet), 18 or 34; got {depth!r}.")
        self.flatten_size = flatten_size(self.features, input_shape)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout) if dropout else nn.Identity(),
                                  nn.Linear(self.flatten_size, output_size))

    @staticmethod
    def _small(input_shape, channels, blocks, kernel_size, padding, batch_norm) -> nn.Sequential:
        in_channels, height, width = input_shape
        side = min(height, width)
        pad = resolve_padding(padding, kernel_size, side, len(channels))
        layers: list[nn.Module] = []
        for index, out_channels in enumerate(channels):
            layers += [nn.Conv2d(in_channels, out_channels, kernel_size, padding=pad, bias=not batch_norm),
                       _norm(out_channels, batch_norm), nn.ReLU()]
            side = output_side(side, kernel_size, 1, pad)
            if side < 1:
                raise DltrainError(
                    f"model=resnet shrinks the {height}x{width} images to nothing at stage {index + 1} "
                    f"(kernel_size={kernel_size}, padding={pad}); use fewer model.channels or model.padding=same."
                )
            if side >= 2:
                layers.append(nn.MaxPool2d(2))
                side //= 2
            layers += [ResidualBlock(out_channels, out_channels, 1, batch_norm) for _ in range(blocks)]
            in_channels = out_channels
        return nn.Sequential(*layers)

    @staticmethod
    def _deep(in_channels, stage_blocks, width, batch_norm) -> nn.Sequential:
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 3, 1, 1, bias=not batch_norm),
                                   _norm(width, batch_norm), nn.ReLU()]
        channels = width
        for stage, count in enumerate(stage_blocks):
            out_channels = width * 2 ** stage
            for index in range(count):
                stride = 2 if stage > 0 and index == 0 else 1
                layers.append(ResidualBlock(channels, out_channels, stride, batch_norm))
                channels = out_channels
        layers.append(nn.AdaptiveAvgPool2d(1))
        return nn.Sequential(*layers)

    @classmethod
    def from_spec(cls, spec, output_size: int, depth=None, channels=(16, 32), blocks: int = 1,
                  kernel_size: int = 5, padding="auto", width: int = 64, batch_norm=None,
                  dropout: float = 0.0):
        return cls(image_shape(spec, "resnet"), output_size, depth, channels, blocks, kernel_size,
                   padding, width, batch_norm, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
