"""A small residual network for the tests: a block whose skip path has its own 1x1 conv, so the
prunable layers are not a chain (the layer walk of report/connectivity.py cannot follow it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TinyResidual(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.skip = nn.Conv2d(8, 16, 1)
        self.fc = nn.Linear(16 * 7 * 7, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.relu(self.conv2(x) + self.skip(x))
        return self.fc(F.max_pool2d(x, 2).flatten(1))
