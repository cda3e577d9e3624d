"""A standard CIFAR-style ResNet-18 without gates: the kind of model a user already has.

It is trained normally; REM reaches it through :func:`rem_unlearn.models.expand.expand`.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an identity (or 1x1 projection) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """ResNet-18 ([2, 2, 2, 2] basic blocks) with a 3x3 stride-1 stem and no max-pool (CIFAR style).

    ``width`` scales the base 64 channels; ``arch`` records the constructor
    arguments so the model can be rebuilt (Retrain, checkpoints).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        self.arch = dict(num_classes=num_classes, in_channels=in_channels, width=width)
        base = max(1, round(64 * width))
        self.conv1 = nn.Conv2d(in_channels, base, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        layers, c_in = [], base
        for i, stride in enumerate((1, 2, 2, 2)):
            c_out = base * 2**i
            layers.append(nn.Sequential(BasicBlock(c_in, c_out, stride), BasicBlock(c_out, c_out)))
            c_in = c_out
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.pool(x), 1))
