"""One-shot magnitude pruning to the per-layer targets, then the shared masked retraining: the
ablation "ADMM removed"."""

from __future__ import annotations

import torch
from torch import nn

from admm_pruning.pruners.base import PruneJob, Pruner, PruneResult
from admm_pruning.sparsity.masks import magnitude_masks


class OneShotPruner(Pruner):
    """Magnitude pruning to the targets in one step: ADMM with the ADMM removed."""

    name = "oneshot"

    def masks(self, model: nn.Module, keep: dict[str, float]) -> dict[str, torch.Tensor]:
        return magnitude_masks(model, keep)

    def prune(self, job: PruneJob) -> PruneResult:
        return PruneResult(self.masks(job.model, job.keep))
