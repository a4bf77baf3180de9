"""Pruners: each turns a dense model into (weights, masks) for masked retraining.

A pruner is built from ``conf/pruner/<name>.yaml`` and exposes ``name``, ``settings()`` (what
shapes its stage folder) and ``run(...)``. New pruners slot in beside ``ADMMPruner``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .masks import apply_masks, magnitude_masks
from .models import set_dropout
from .modules import ADMMModule, OptimizerFactory
from .stages import save_tensors
from .training import StageContext


class ADMMPruner:
    """Zhang et al. 2018: ADMM iterations, then the hard prune to the l_i largest weights.

    Defaults (conf/pruner/admm.yaml) are the authors' TF LeNet recipe: Adam lr 1e-3, rho 1e-4
    constant, penalty rho/2 * ||W-Z+U||^2, L2 5e-5/2 * ||W||^2, no dropout, 30 iterations.
    """

    name = "admm"

    def __init__(
        self,
        optimizer: OptimizerFactory,
        iterations: int = 30,
        epochs_per_iteration: float = 4.5,
        batch_size: int = 50,
        rho: float = 1e-4,
        rho_scale: float = 0.5,
        rho_multiplier: float = 1.0,
        rho_max: float | None = None,
        eps: float | None = None,
        l2: float = 5e-5,
        dropout: float = 0.0,
        lr_drop_epochs: float | None = None,
        lr_drop_gamma: float = 0.1,
        lr_reset_each_iteration: bool = True,
        **_: Any,
    ) -> None:
        self.optimizer = optimizer
        self.iterations = iterations
        self.epochs_per_iteration = epochs_per_iteration
        self.batch_size = batch_size
        self.rho, self.rho_scale = rho, rho_scale
        self.rho_multiplier, self.rho_max = rho_multiplier, rho_max
        self.eps, self.l2, self.dropout = eps, l2, dropout
        self.lr_drop_epochs, self.lr_drop_gamma = lr_drop_epochs, lr_drop_gamma
        self.lr_reset_each_iteration = lr_reset_each_iteration

    def run(self, ctx: StageContext, model: nn.Module, keep: dict[str, float],
            stage_dir: Path, resume: Path | None) -> dict[str, Any]:
        steps_per_epoch = ctx.data.steps_per_epoch(self.batch_size)
        steps = max(1, round(self.epochs_per_iteration * steps_per_epoch))
        drop = round(self.lr_drop_epochs * steps_per_epoch) if self.lr_drop_epochs else None
        set_dropout(model, self.dropout)
        module = ADMMModule(
            model, self.optimizer, keep, steps, self.iterations, self.rho, rho_scale=self.rho_scale,
            rho_multiplier=self.rho_multiplier, rho_max=self.rho_max, eps=self.eps, l2=self.l2,
            lr_drop_steps=drop, lr_drop_gamma=self.lr_drop_gamma,
            lr_reset_each_iteration=self.lr_reset_each_iteration)
        epochs = -(-self.iterations * steps // steps_per_epoch)  # the module stops at the last update
        ctx.fit(module, "admm", stage_dir, resume, self.batch_size, max_epochs=epochs)
        admm_acc = ctx.evaluate(model)
        masks = magnitude_masks(model, keep)
        save_tensors(stage_dir / "weights.pt", {k: v.cpu() for k, v in model.state_dict().items()})
        save_tensors(stage_dir / "masks.pt", masks)
        apply_masks(model, masks)
        return {
            "admm_acc": admm_acc,
            "pruned_acc": ctx.evaluate(model),
            "steps_per_iteration": steps,
            "iterations_run": int(module.admm.iteration),
            "converged": module.converged,
            "residuals": module.history,
        }
