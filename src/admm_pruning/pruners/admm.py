"""ADMM pruning (Zhang et al. 2018) and its structured form (ADAM-ADMM): one ADMM phase, then the
hard prune to the l_i largest weights of W. Progressive ADMM runs the same phase in rounds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from admm_pruning.models.layers import set_dropout
from admm_pruning.pruners.base import PruneJob, Pruner, PruneResult
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.sparsity.masks import hard_prune
from admm_pruning.training.admm_module import ADMMModule
from admm_pruning.training.context import StageContext


def admm_phase(ctx: StageContext, model: nn.Module, keep: dict[str, float], schedule: ADMMSchedule,
               sparsity: dict[str, str] | None, stage_dir: Path, resume: Path | None
               ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """ADMM towards ``keep`` from the model as it is (masks attached stay fixed: W, Z and U all
    vanish where a mask is zero), then the hard prune. Returns the masks and the phase's record."""
    steps_per_epoch = ctx.steps_per_epoch(schedule.batch_size)
    set_dropout(model, schedule.dropout)
    module = ADMMModule(model, schedule, keep, steps_per_epoch, sparsity)
    epochs = -(-schedule.iterations * module.steps_per_iteration // steps_per_epoch)  # stops at the last update
    ctx.fit(module, "admm", stage_dir, resume, schedule.batch_size, max_epochs=epochs)
    record = {"steps_per_iteration": module.steps_per_iteration, "iterations_run": int(module.admm.iteration),
              "converged": module.converged, "residuals": module.history}
    return hard_prune(model, keep, sparsity), record


class ADMMPruner(Pruner):
    """Zhang et al. 2018: ADMM iterations, then the hard prune to the l_i largest weights.

    ``sparsity`` (layer -> filter, channel, shape, row, column; default unstructured) makes it
    ADAM-ADMM's structured pruning: the Z-step and the hard prune keep the groups of largest L2
    norm. Every other option is a field of ``ADMMSchedule`` (conf/pruner/admm.yaml).
    """

    name = "admm"

    def __init__(self, sparsity: dict[str, str] | None = None, **schedule: Any) -> None:
        self.sparsity = dict(sparsity or {})
        self.schedule = ADMMSchedule(**schedule)

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return ("sparsity", *ADMMSchedule.options())

    def pruning_epochs(self, steps_per_epoch: Callable[[int], int], keep: dict[str, float],
                       sizes: dict[str, int]) -> float:
        return self.schedule.epochs(steps_per_epoch(self.schedule.batch_size))

    def prune(self, job: PruneJob) -> PruneResult:
        masks, record = admm_phase(job.ctx, job.model, job.keep, self.schedule, self.sparsity, job.dir, job.resume)
        return PruneResult(masks, {"admm_acc": job.ctx.evaluate(job.model), **record})
