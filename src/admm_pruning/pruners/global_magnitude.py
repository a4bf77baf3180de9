"""Global magnitude pruning: one threshold across the target layers, the per-layer split left to
the weights."""

from __future__ import annotations

import torch
from torch import nn

from admm_pruning.models.layers import prunable_layers
from admm_pruning.pruners.oneshot import OneShotPruner
from admm_pruning.sparsity.masks import global_magnitude_masks
from admm_pruning.sparsity.projections import keep_count


class GlobalMagnitudePruner(OneShotPruner):
    """One magnitude threshold across the target layers, keeping as many weights in total as the
    per-layer targets do (so compressions match); the per-layer split is the method's choice."""

    name = "global_magnitude"

    def masks(self, model: nn.Module, keep: dict[str, float]) -> dict[str, torch.Tensor]:
        layers = prunable_layers(model)
        k = sum(keep_count(layers[n].weight.numel(), f) for n, f in keep.items())
        return global_magnitude_masks(model, list(keep), k)
