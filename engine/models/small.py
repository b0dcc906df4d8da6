"""Small networks for 8x8 digits and 2-D toy points.

The digits teacher (~100k parameters) is clearly larger than the student
(~10k): distillation from a bigger model, as in the paper's pairs.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class DigitsTeacher(nn.Module):
    """Conv 32 -> conv 64 -> pool -> fc 128 (features) -> C."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels, height, width = input_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (height // 2) * (width // 2), 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)  # (B, 128)
        return self.head(features), features


class DigitsStudent(nn.Module):
    """Conv 16 -> pool -> fc 32 (features) -> C."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int):
        super().__init__()
        channels, height, width = input_shape
        self.body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(16 * (height // 2) * (width // 2), 32), nn.ReLU(),
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)  # (B, 32)
        return self.head(features), features


class _Mlp(nn.Module):
    def __init__(self, input_shape: tuple[int, ...], num_classes: int, width: int, depth: int):
        super().__init__()
        layers, size = [], input_shape[0]
        for _ in range(depth):
            layers += [nn.Linear(size, width), nn.ReLU()]
            size = width
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.body(x)  # (B, width)
        return self.head(features), features


def MlpLarge(input_shape, num_classes):  # noqa: N802 - a factory named like the class it builds
    return _Mlp(input_shape, num_classes, width=128, depth=3)


def MlpSmall(input_shape, num_classes):  # noqa: N802
    return _Mlp(input_shape, num_classes, width=32, depth=2)
