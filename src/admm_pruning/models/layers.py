"""What the suite needs to know of any network: its prunable layers, classes and dropout."""

from __future__ import annotations

from torch import nn

PRUNABLE_TYPES = (nn.Linear, nn.Conv2d)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Conv and Linear layers by module name: the layers whose weights count for compression."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}


def num_outputs(model: nn.Module) -> int:
    """Number of classes: the output width of the model's last Linear layer."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


def set_dropout(model: nn.Module, p: float) -> None:
    """Set the rate of every dropout layer (stages differ: ADMM runs without dropout)."""
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
