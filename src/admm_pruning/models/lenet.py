"""The MNIST networks of the papers, with their prunable layers named as the papers name them.

Each original trained a slightly different network, and the differences move dense accuracy
(REFERENCE.md section 1), so the initialisation and LeNet-5's conv ReLUs are options:

- ``init="torch"``: PyTorch's default init (the suite's historical behaviour).
- ``init="tf"``: the authors' TF code (tensorflow-mnist-code/model.py): weights from
  ``tf.truncated_normal(stddev=0.1)`` (redrawn beyond 2 std), biases 0.1.
- ``init="caffe"``: Caffe's LeNet example: ``xavier`` filler (uniform within
  +-sqrt(3 / fan_in)), biases 0.
"""

from __future__ import annotations

import math

import torch
from torch import nn

INITS = ("torch", "tf", "caffe")
TF_STD = 0.1    # tf.truncated_normal(shape, stddev=0.1) in the authors' TF code
TF_BIAS = 0.1   # tf.constant(0.1, shape=shape)


def check_init(init: str) -> None:
    """Refuse an unknown scheme before any layer is built: a typo must not train silently."""
    if init not in INITS:
        raise ValueError(f"init={init!r}: expected one of {', '.join(INITS)}")


def fan_in(weight: torch.Tensor) -> int:
    """Caffe's fan_in: the blob's count over its first axis (in_channels * kh * kw for a conv)."""
    return weight[0].numel()


@torch.no_grad()
def init_layers(layers: list[nn.Module], init: str) -> None:
    """Re-initialise ``layers`` in place as the chosen original did; "torch" keeps them as built.

    Draws from torch's global generator in layer order, so a seeded run is repeatable.
    """
    check_init(init)
    if init == "torch":
        return
    for m in layers:
        if init == "tf":
            nn.init.trunc_normal_(m.weight, mean=0.0, std=TF_STD, a=-2 * TF_STD, b=2 * TF_STD)
            nn.init.constant_(m.bias, TF_BIAS)
        else:  # caffe: XavierFiller with its default FAN_IN variance norm
            bound = math.sqrt(3.0 / fan_in(m.weight))
            nn.init.uniform_(m.weight, -bound, bound)
            nn.init.zeros_(m.bias)


class LeNet300(nn.Module):
    """LeNet-300-100: 784-300-100-10, ReLU. Prunable layers fc1, fc2, fc3."""

    def __init__(self, num_classes: int = 10, dropout: float = 0.0, init: str = "torch") -> None:
        super().__init__()
        check_init(init)
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        self.dropout = nn.Dropout(dropout)
        init_layers([self.fc1, self.fc2, self.fc3], init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = self.dropout(torch.relu(self.fc2(x)))
        return self.fc3(x)


class LeNet5(nn.Module):
    """Caffe/TF LeNet-5: conv(20,5x5)-pool-conv(50,5x5)-pool-fc500-fc10.

    ``conv_relu=True`` is the authors' TF network (conv -> ReLU -> max-pool for both convs);
    False is Caffe's LeNet, which pools the raw conv output. Weight counts are the same.
    Dropout sits after fc1, as in the authors' TF code (keep 0.5 while pretraining and
    retraining, off during ADMM); the stage sets its rate.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5, conv_relu: bool = False,
                 init: str = "torch") -> None:
        super().__init__()
        check_init(init)
        self.conv_relu = bool(conv_relu)
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.fc1 = nn.Linear(800, 500)
        self.fc2 = nn.Linear(500, num_classes)
        self.dropout = nn.Dropout(dropout)
        init_layers([self.conv1, self.conv2, self.fc1, self.fc2], init)

    def _conv(self, conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        # relu(max_pool(x)) == max_pool(relu(x)) exactly, values and gradients (ReLU is monotone,
        # and where the window's max is <= 0 both give 0): the TF code's conv -> ReLU -> pool,
        # with the ReLU on the pooled map, a quarter of the elements.
        x = torch.max_pool2d(conv(x), 2)
        return torch.relu(x) if self.conv_relu else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._conv(self.conv1, x)
        x = self._conv(self.conv2, x)
        x = self.dropout(torch.relu(self.fc1(x.flatten(1))))
        return self.fc2(x)
