"""A plain small CNN without gates: the cheapest "model the user already has" for tests and demos."""

from __future__ import annotations

import torch
from torch import nn


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU blocks (32, 64, 128 channels x ``width``; max-pool after the first two),
    global average pool and a linear classifier; ``arch`` records the constructor arguments."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        self.arch = dict(num_classes=num_classes, in_channels=in_channels, width=width)
        c1, c2, c3 = (max(1, round(c * width)) for c in (32, 64, 128))
        self.features = nn.Sequential(_block(in_channels, c1), nn.MaxPool2d(2), _block(c1, c2), nn.MaxPool2d(2),
                                      _block(c2, c3), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))
