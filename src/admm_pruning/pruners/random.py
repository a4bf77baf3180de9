"""Random pruning to the per-layer targets (ShrinkBench's sanity baseline), then the shared
retraining: the floor every method must clear."""

from __future__ import annotations

import torch

from admm_pruning.models.layers import prunable_layers
from admm_pruning.pruners.base import PruneJob, Pruner, PruneResult
from admm_pruning.sparsity.projections import keep_count


class RandomPruner(Pruner):
    """Each layer keeps exactly its target count of weights, drawn uniformly at random from the
    run's seed (ShrinkBench's RandomPruning): what a pruner is worth is its margin over this."""

    name = "random"

    def prune(self, job: PruneJob) -> PruneResult:
        gen = torch.Generator().manual_seed(job.ctx.seed)
        layers, masks = prunable_layers(job.model), {}
        for name, frac in job.keep.items():
            w = layers[name].weight
            chosen = torch.randperm(w.numel(), generator=gen)[: keep_count(w.numel(), frac)]
            flat = torch.zeros(w.numel(), dtype=torch.bool)
            flat[chosen] = True
            masks[name] = flat.view_as(w).to(w.device)
        return PruneResult(masks)
