"""ADMM pruning as a Lightning callback, for any LightningModule (in the style of Lightning's
``ModelPruning``)::

    trainer = pl.Trainer(callbacks=[ADMMPruning({"model.fc1": 0.05}, ADMMSchedule(rho=1e-3, iterations=10),
                                                update_every=500)])
    trainer.fit(my_module, loader)       # ADMM W-steps, Z/U updates, then the hard prune
    trainer2.fit(my_module, loader)      # masked retraining: pruned weights stay exactly zero

Whatever the module's loss and batches: the penalty's gradient is added before every optimizer
step (after fp16 unscaling, also for fused optimizers), the Z/U update follows every
``update_every``-th optimizer step (an optimizer step hook: automatic and manual optimization,
gradient accumulation, several steps per batch), the state travels in checkpoints, and once the
schedule's iterations are done (or the residuals fall below its eps) the weights are hard-pruned
to masks that hold through the rest of this fit and any later one. Layer names are those of the
LightningModule (``model.fc1`` for a module holding ``self.model``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch

from admm_pruning.api import ADMM, Targets
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.sparsity.masks import apply_masks, current_masks, plain_state_dict
from admm_pruning.training.distributed import broadcast_
from admm_pruning.training.modules import unscale_fused_


class ADMMPruning(pl.Callback):
    """``targets``: keep fractions by layer name, or one overall compression spread evenly over
    ``layers`` (default: every Conv2d and Linear). ``sparsity``: a type per layer (see ``ADMM``).
    ``update_every``: optimizer steps between Z/U updates; or ``update_every_epochs`` (the fit's
    optimizer steps per epoch times it). ``prune``: hard-prune when ADMM is done (default)."""

    def __init__(self, targets: Targets, schedule: ADMMSchedule | None = None,
                 sparsity: dict[str, str] | None = None, layers: Iterable[str] | None = None,
                 update_every: int | None = None, update_every_epochs: float | None = None,
                 prune: bool = True) -> None:
        if (update_every is None) == (update_every_epochs is None):
            raise ValueError("give one of update_every (optimizer steps) or update_every_epochs")
        self.targets, self.schedule, self.sparsity = targets, schedule or ADMMSchedule(), sparsity
        self.layers = list(layers) if layers is not None else None
        self.update_every, self.update_every_epochs, self.prune = update_every, update_every_epochs, prune
        self.admm: ADMM | None = None
        self.masks: dict[str, torch.Tensor] | None = None
        self._pending: dict[str, Any] | None = None
        self._hooks: list[Any] = []

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.admm is not None or self.masks is not None:
            return
        every = self.update_every
        if every is None:
            per_epoch = max(1, trainer.estimated_stepping_batches // max(1, trainer.max_epochs or 1))
            every = max(1, round(self.update_every_epochs * per_epoch))
        self.admm = ADMM(pl_module, self.targets, self.schedule, self.sparsity, self.layers, update_every=every)
        if self._pending is not None:
            self._load(self._pending)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.admm is not None:  # Z, U, rho live where the weights do
            self.admm.state.to(next(iter(self.admm.weights().values())).device)
        self._hooks = [opt.register_step_post_hook(self._after_step) for opt in trainer.optimizers]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    @property
    def active(self) -> bool:
        return self.admm is not None and self.masks is None

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.active:
            unscale_fused_(trainer, optimizer)
            self.admm.penalize_()

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        if not self.active:
            return
        if self.admm.step() is not None:
            broadcast_([*self.admm.state.buffers()])  # DDP: rank 0's Z, U and rho everywhere
        if self.admm.done and self.prune:
            self.masks = self.admm.hard_prune()
            apply_masks(self.admm.model, self.masks)

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Masked weights go under their plain keys (the masks travel in this callback's state), so
        the checkpoint loads into the user's unmasked module; ``load_state_dict`` masks it again."""
        if self.masks is not None:
            checkpoint["state_dict"] = plain_state_dict(pl_module)

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"masks": self.masks}
        if self.admm is not None:
            out["admm"] = self.admm.state_dict()
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self.admm is None:  # restored before setup built it: applied there
            self._pending = state_dict
        else:
            self._load(state_dict)

    def _load(self, state: dict[str, Any]) -> None:
        if state.get("admm") is not None:
            self.admm.load_state_dict(state["admm"])
        self.masks = state.get("masks")
        if self.masks is not None and not current_masks(self.admm.model):
            apply_masks(self.admm.model, self.masks)
        self._pending = None
