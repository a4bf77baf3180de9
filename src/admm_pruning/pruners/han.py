"""Han et al. 2015, "Learning both weights and connections": prune by a per-layer threshold of
quality x std of the layer's weights, retrain, repeat; surviving weights are kept.

Each round's quality q_i is solved so that the round reaches its target (keep_i ** (r / rounds)
of layer i). Every round is retrained with Han's recipe, the last one included: the original
(pretraining) optimizer at 1/10 of its lr on MNIST (1/100 on AlexNet), with L2, and dropout scaled
by sqrt(C_ir / C_io).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from admm_pruning.foundations.checks import positive
from admm_pruning.models.layers import prunable_layers
from admm_pruning.pruners.iterative_magnitude import IterativeMagnitudePruner, dropout_for
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.training.modules import OptimizerFactory
from admm_pruning.training.recipe import Recipe


def quality_threshold(w: torch.Tensor, k: int) -> tuple[float, float, torch.Tensor]:
    """Han's rule solved for k survivors: threshold t = q * std(surviving weights), kept |w| > t.

    t is the (k+1)-th largest magnitude among the survivors (so exactly the k largest stay when
    magnitudes are distinct); returns (q, t, mask).
    """
    w = w.detach()
    alive = w[w != 0]
    if k >= alive.numel():
        return 0.0, 0.0, w != 0
    t = float(torch.topk(alive.abs(), k + 1).values[-1])
    return t / float(alive.std()), t, w.abs() > t


class HanPruner(IterativeMagnitudePruner):
    """Han et al. 2015 (see the module docstring). ``optimizer`` is the original training
    optimizer (conf: the pretraining one) and ``lr_scale`` Han's retraining fraction of its lr."""

    name = "han"

    def __init__(self, optimizer: OptimizerFactory, lr_scale: float = 0.1, rounds: int = 3,
                 epochs_per_round: int = 2, batch_size: int = 50, l2: float = 5e-5, dropout: float = 0.5,
                 dropout_layer: str | None = None) -> None:
        super().__init__(optimizer, rounds, epochs_per_round, batch_size, l2, dropout, dropout_layer)
        positive("pruner.lr_scale", lr_scale)
        self.lr_scale = lr_scale

    def round_masks(self, model: nn.Module, keep: dict[str, float], r: int) -> tuple[dict[str, torch.Tensor],
                                                                                      dict[str, Any]]:
        layers, masks, quality = prunable_layers(model), {}, {}
        for name, frac in keep.items():
            w = layers[name].weight
            q, _, masks[name] = quality_threshold(w, keep_count(w.numel(), frac ** (r / self.rounds)))
            quality[name] = q
        return masks, {"quality": quality}

    def round_recipe(self, masks: dict[str, torch.Tensor]) -> Recipe:
        return super().round_recipe(masks).with_lr_scale(self.lr_scale)

    def retrain_recipe(self, shared: Recipe, masks: dict[str, torch.Tensor]) -> Recipe:
        """Han retrains the last round as every other: his recipe, for the budget's epochs."""
        return Recipe(epochs=shared.epochs, batch_size=self.batch_size, optimizer=self.optimizer, l2=self.l2,
                      dropout=dropout_for(self.dropout, masks, self.dropout_layer)).with_lr_scale(self.lr_scale)
