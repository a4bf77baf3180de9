"""Does signal still flow through a pruned network?

At extreme sparsity a mask can cut every path from the input to some unit: an output class
then depends on nothing but biases, and accuracy collapses on some seeds. This walks the
prunable layers in forward order (a chain, as in the LeNets and AlexNet) and marks the units
that some input can still reach through kept weights. A network that is not a chain (a residual
block adds two paths) is reported as such, its units unwalked: a skip path can keep a unit alive
that the walk along the layers would call dead.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import fx, nn

from admm_pruning.models.layers import prunable_layers


def _reach(mask: torch.Tensor, alive_in: torch.Tensor, groups: int) -> torch.Tensor:
    """Output units with at least one kept weight from a live input (channel or feature).

    A grouped conv's output unit sees only its group's in_channels / groups inputs.
    """
    w = mask.to(torch.bool).flatten(2).any(-1) if mask.dim() > 2 else mask.to(torch.bool)
    per_out = alive_in.view(groups, -1).repeat_interleave(w.shape[0] // groups, dim=0)
    return (w & per_out).any(-1)


def not_a_chain(model: nn.Module) -> str | None:
    """Why ``model``'s traced graph is not a chain (an op with two tensor inputs, as a residual add,
    or an output read by two ops), or None for a chain or a model torch.fx cannot trace."""
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception:  # data-dependent control flow and the like: the layer walk decides below
        return None
    for node in graph.nodes:
        inputs = [n for n in node.all_input_nodes if n.op != "get_attr"]
        if len(inputs) > 1 or (node.op != "get_attr" and len(node.users) > 1):
            return f"{node.name} joins or splits paths"
    return None


def connectivity(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Per layer, how many output units no input reaches; ``disconnected`` if any class is cut off.
    A network that is not a chain gives ``{"chain": false, "reason": ...}`` and no verdict."""
    reason = not_a_chain(model)
    if reason:
        return {"chain": False, "reason": reason, "per_layer": {}, "disconnected": None}
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
                reason = f"layer {name}: {fan_in} inputs do not follow from {alive.numel()} units"
                return {"chain": False, "reason": reason, "per_layer": {}, "disconnected": None}
            alive = alive.repeat_interleave(fan_in // alive.numel())  # flatten: channel -> its features
        alive = _reach(mask, alive, groups)
        report[name] = {"units": alive.numel(), "dead_units": int((~alive).sum())}
    last = next(reversed(report)) if report else None
    return {"chain": True, "per_layer": report, "disconnected": bool(last and report[last]["dead_units"])}
