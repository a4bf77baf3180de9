"""Computation metrics: FLOPs per conv / linear layer, dense vs what pruning leaves.

Counts come from ``torch.utils.flop_counter.FlopCounterMode`` (one multiply-accumulate = 2
FLOPs; biases, pooling and activations are not counted) on the dense model and on the
physically shrunk model (``shrink``). Within each shrunk layer the zero weights still cost
dense FLOPs, so the FLOPs left are, as the papers count unstructured sparsity, the layer's
FLOPs times the fraction of its weights that are nonzero; theoretical speedup = dense / that
(Blalock et al. 2020).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from admm_pruning.export.layers import WEIGHTED_TYPES
from admm_pruning.export.shrink import ShrinkError, shrink
from admm_pruning.models.layers import PRUNABLE_TYPES

FLOPS_DEFINITION = (
    "FLOPs for one input (batch 1), conv and linear layers only, counted by "
    "torch.utils.flop_counter.FlopCounterMode (1 multiply-accumulate = 2 FLOPs; biases, pooling and "
    "activations not counted). dense: the unpruned model. shrunk: the physically shrunk dense model "
    "(dead or unused filters, channels, rows and columns deleted; a conv with shape-wise sparsity runs "
    "as a GEMM over its used (c, kh, kw) kernel columns only). remaining: per layer, the shrunk "
    "layer's FLOPs x the fraction of its weights that are nonzero (the FLOPs of the nonzero weights, "
    "the papers' convention; for a layer shrinking does not touch, dense FLOPs x kept fraction). "
    "theoretical_speedup = dense / remaining; shrunk_speedup = dense / shrunk.")


def layer_flops(model: nn.Module, example: torch.Tensor) -> dict[str, int]:
    """FLOPs of each conv / linear module (a shrunk model's ColumnConv2d too) of ``model`` for
    one forward pass of ``example``."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(example)
    counts = counter.get_flop_counts()
    root = type(model).__name__
    return {name: int(sum(counts.get(f"{root}.{name}", {}).values()))
            for name, m in model.named_modules() if isinstance(m, WEIGHTED_TYPES)}


def flop_report(model: nn.Module, example: torch.Tensor) -> dict[str, Any]:
    """Dense, shrunk and remaining FLOPs per layer and in total, for a pruned ``model``.

    ``example`` is one input (batch 1). A model that cannot be shrunk (not a chain) is
    counted on its own layers, with ``shrink_error`` saying why.
    """
    model.eval()
    example = example[:1]
    layers = {n: m for n, m in model.named_modules() if isinstance(m, PRUNABLE_TYPES)}
    dense = layer_flops(model, example)
    weights = {n: m.weight.detach() for n, m in layers.items()}
    report: dict[str, Any] = {"flops_definition": FLOPS_DEFINITION, "input_shape": list(example.shape)}
    try:
        small = shrink(model, example)
    except ShrinkError as exc:
        shrunk, report["shrink_error"] = dense, str(exc)
    else:
        net = small.module()
        source = {layer["name"]: layer["module"] for layer in small.config["layers"] if "module" in layer}
        shrunk = {source[n]: f for n, f in layer_flops(net, example).items()}
        weights = {source[n]: m.weight.detach() for n, m in net.named_modules() if isinstance(m, WEIGHTED_TYPES)}
        report["shrunk_layers"] = small.kept
    per_layer = {}
    for name, f in dense.items():
        nonzero = int(torch.count_nonzero(weights[name]))
        per_layer[name] = {"dense": f, "shrunk": shrunk[name],
                           "remaining": shrunk[name] * nonzero // weights[name].numel(),
                           "shrunk_weights": weights[name].numel(), "shrunk_nonzero": nonzero}
    totals = {k: sum(d[k] for d in per_layer.values()) for k in ("dense", "shrunk", "remaining")}
    conv = [n for n, m in layers.items() if isinstance(m, nn.Conv2d)]
    conv_nonzero = sum(per_layer[n]["shrunk_nonzero"] for n in conv)
    return {
        **report,
        **totals,
        "theoretical_speedup": totals["dense"] / max(totals["remaining"], 1),
        "shrunk_speedup": totals["dense"] / max(totals["shrunk"], 1),
        # conv weights / nonzero conv weights left after shrinking: weights that only fed deleted
        # inputs are gone (their constant contribution is folded into the next layer's bias)
        "shrunk_conv_compression": (sum(layers[n].weight.numel() for n in conv) / max(conv_nonzero, 1)
                                    if conv else None),
        "per_layer": per_layer,
    }
