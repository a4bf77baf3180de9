"""The ImageNet networks of the papers, under the Caffe prototxt layer names the papers prune."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class AlexNet(nn.Module):
    """torchvision's AlexNet (the single-tower "one weird trick" variant) under the papers' layer
    names conv1..conv5, fc6..fc8 (the Caffe prototxt names the ADMM paper prunes).

    Layers, shapes, order and initialisation are torchvision's, so its weights load through
    ``pretrained.from_torchvision_alexnet`` and the same seed gives the same init. Dropout acts on
    the inputs of fc6 and fc7, as in torchvision. Conv shapes differ from CaffeNet's (64/192/384/
    256/256 filters, no groups): 61.1M weights instead of 60.95M.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 11, stride=4, padding=2)
        self.conv2 = nn.Conv2d(64, 192, 5, padding=2)
        self.conv3 = nn.Conv2d(192, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 256, 3, padding=1)
        self.conv5 = nn.Conv2d(256, 256, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.drop6 = nn.Dropout(dropout)
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.drop7 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.conv1(x)), 3, 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 3, 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2)
        x = self.pool(x).flatten(1)
        x = F.relu(self.fc6(self.drop6(x)))
        x = F.relu(self.fc7(self.drop7(x)))
        return self.fc8(x)


class CaffeNet(nn.Module):
    """BVLC CaffeNet, the two-tower AlexNet of Caffe that the ADMM papers count (60.95M weights):
    conv1 96x3x11x11 stride 4, conv2 256x48x5x5 and conv4/conv5 in two groups, LRN, ceil-mode
    pooling, fc6 9216x4096, dropout after fc6 and fc7. Caffe's Gaussian initialisation.

    CaffeNet normalises after pooling; ``lrn_before_pool`` gives bvlc_alexnet's order (same
    weights). The adaptive 6x6 pool is the identity at 224 or 227 pixels and lets tests run
    at low resolution.
    """

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, lrn_before_pool: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 96, 11, stride=4)
        self.conv2 = nn.Conv2d(96, 256, 5, padding=2, groups=2)
        self.conv3 = nn.Conv2d(256, 384, 3, padding=1)
        self.conv4 = nn.Conv2d(384, 384, 3, padding=1, groups=2)
        self.conv5 = nn.Conv2d(384, 256, 3, padding=1, groups=2)
        self.lrn = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        self.lrn_before_pool = lrn_before_pool
        self.pool = nn.AdaptiveAvgPool2d((6, 6))
        self.fc6 = nn.Linear(256 * 6 * 6, 4096)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Linear(4096, 4096)
        self.drop7 = nn.Dropout(dropout)
        self.fc8 = nn.Linear(4096, num_classes)
        # bvlc_reference_caffenet fillers: (weight std, bias constant)
        fillers = {"conv1": (0.01, 0.0), "conv2": (0.01, 1.0), "conv3": (0.01, 0.0), "conv4": (0.01, 1.0),
                   "conv5": (0.01, 1.0), "fc6": (0.005, 1.0), "fc7": (0.005, 1.0), "fc8": (0.01, 0.0)}
        for name, (std, bias) in fillers.items():
            layer = getattr(self, name)
            nn.init.normal_(layer.weight, std=std)
            nn.init.constant_(layer.bias, bias)

    def _pool_norm(self, x: torch.Tensor) -> torch.Tensor:
        if self.lrn_before_pool:
            return F.max_pool2d(self.lrn(x), 3, 2, ceil_mode=True)
        return self.lrn(F.max_pool2d(x, 3, 2, ceil_mode=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._pool_norm(F.relu(self.conv1(x)))
        x = self._pool_norm(F.relu(self.conv2(x)))
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = F.max_pool2d(F.relu(self.conv5(x)), 3, 2, ceil_mode=True)
        x = self.pool(x).flatten(1)
        x = self.drop6(F.relu(self.fc6(x)))
        x = self.drop7(F.relu(self.fc7(x)))
        return self.fc8(x)
