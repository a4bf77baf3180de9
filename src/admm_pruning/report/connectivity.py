"""Does signal still flow through a pruned network?

At extreme sparsity a mask can cut every path from the input to some unit: an output class
then depends on nothing but biases, and accuracy collapses on some seeds. This walks the
prunable layers in forward order (a chain, as in the LeNets and AlexNet) and marks the units
that some input can still reach through kept weights.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from admm_pruning.models.layers import prunable_layers


def _reach(mask: torch.Tensor, alive_in: torch.Tensor, groups: int) -> torch.Tensor:
    """Output units with at least one kept weight from a live input (channel or feature).

    A grouped conv's output unit sees only its group's in_channels / groups inputs.
    """
    w = mask.to(torch.bool).flatten(2).any(-1) if mask.dim() > 2 else mask.to(torch.bool)
    per_out = alive_in.view(groups, -1).repeat_interleave(w.shape[0] // groups, dim=0)
    return (w & per_out).any(-1)


def connectivity(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per layer, how many output units no input reaches; ``disconnected`` if any class is cut off."""
    alive: torch.Tensor | None = None
    report: dict[str, dict[str, int]] = {}
    for name, layer in prunable_layers(model).items():
        mask = masks.get(name, torch.ones_like(layer.weight, dtype=torch.bool)).cpu()
        groups = getattr(layer, "groups", 1)
        fan_in = mask.shape[1] * groups
        if alive is None:
            alive = torch.ones(fan_in, dtype=torch.bool)
        elif alive.numel() != fan_in:
            if fan_in % alive.numel():
                raise ValueError(f"layer {name}: {fan_in} inputs do not follow from {alive.numel()} units")
            alive = alive.repeat_interleave(fan_in // alive.numel())  # flatten: channel -> its features
        alive = _reach(mask, alive, groups)
        report[name] = {"units": alive.numel(), "dead_units": int((~alive).sum())}
    last = next(reversed(report)) if report else None
    return {"per_layer": report, "disconnected": bool(last and report[last]["dead_units"])}
