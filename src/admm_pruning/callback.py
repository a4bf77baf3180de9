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

from typing import Any

import pytorch_lightning as pl
import torch

from admm_pruning.api import ADMM, Layers, Targets
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.sparsity.masks import apply_masks, current_masks, plain_state_dict
from admm_pruning.training.distributed import broadcast_
from admm_pruning.training.fast import set_memory_format
from admm_pruning.training.modules import unscale_fused_


class ADMMPruning(pl.Callback):
    """``targets``: keep fractions by layer name, or one overall compression spread over ``layers``
    (names, modules, ``(module, "weight")`` pairs or a ``(name, module) -> bool`` filter; default:
    every Conv2d and Linear) by ``profile`` (``uniform`` or ``global_magnitude``). ``sparsity``: a
    type per layer (see ``ADMM``).
    ``update_every``: optimizer steps between Z/U updates; or ``update_every_epochs`` (the fit's
    optimizer steps per epoch times it). When ADMM is done: ``prune`` hard-prunes (default), and
    ``stop`` ends the fit (the suite's ADMM stage, which prunes afterwards)."""

    def __init__(self, targets: Targets, schedule: ADMMSchedule | None = None,
                 sparsity: dict[str, str] | None = None, layers: Layers = None,
                 update_every: int | None = None, update_every_epochs: float | None = None,
                 prune: bool = True, stop: bool = False, profile: str = "uniform") -> None:
        if (update_every is None) == (update_every_epochs is None):
            raise ValueError("give one of update_every (optimizer steps) or update_every_epochs")
        self.targets, self.schedule, self.sparsity = targets, schedule or ADMMSchedule(), sparsity
        self.layers, self.profile = layers, profile
        self.update_every, self.update_every_epochs = update_every, update_every_epochs
        self.prune, self.stop = prune, stop
        self.admm: ADMM | None = None
        self.masks: dict[str, torch.Tensor] | None = None
        self.finished = False
        self.trainer: pl.Trainer | None = None
        self._pending: dict[str, Any] | None = None
        self._hooks: list[Any] = []

    def build(self, model: torch.nn.Module, update_every: int) -> ADMM:
        """The ADMM object for ``model`` (the LightningModule, or a model inside it whose layer names
        the targets use); ``setup`` builds it for the LightningModule when nobody did before."""
        self.admm = ADMM(model, self.targets, self.schedule, self.sparsity, self.layers, update_every=update_every,
                         profile=self.profile)
        return self.admm

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage != "fit" or self.admm is not None or self.masks is not None:
            return
        self.build(pl_module, self.update_every or 1)  # update_every_epochs: set once the batches are known
        if self._pending is not None:
            self._load(self._pending)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        """``update_every_epochs`` in optimizer steps: one per (accumulated) batch; a module that makes
        several steps per batch gives ``update_every`` instead."""
        if self.update_every_epochs is not None and self.admm is not None:
            per_epoch = -(-trainer.num_training_batches // trainer.accumulate_grad_batches)
            self.admm.update_every = max(1, round(self.update_every_epochs * per_epoch))

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.trainer = trainer
        if self.admm is not None:  # Z, U, rho live where the weights do, in their memory layout
            weights = list(self.admm.weights().values())
            self.admm.state.to(weights[0].device)
            nhwc = any(w.dim() == 4 and not w.is_contiguous() and w.is_contiguous(memory_format=torch.channels_last)
                       for w in weights)
            set_memory_format(self.admm.state, channels_last=nhwc)
        self._hooks = [opt.register_step_post_hook(self._after_step) for opt in trainer.optimizers]

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    @property
    def active(self) -> bool:
        return self.admm is not None and self.masks is None and not self.finished

    @torch.no_grad()
    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                 optimizer: torch.optim.Optimizer) -> None:
        if self.active:
            unscale_fused_(trainer, optimizer)
            self.admm.penalize_()

    def _after_step(self, optimizer: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
        """After every optimizer step (a hook on the optimizer, so any loop): the Z/U update when due.
        Steps are Lightning's count (the hook runs before Lightning counts this one), so an optimizer
        whose ``step`` calls its parent's, which runs the hooks again, still counts once."""
        step, every = self.trainer.global_step + 1, self.admm.update_every
        if not self.active or step == self.admm.steps:
            return
        previous, self.admm.steps = self.admm.steps, step
        if step // every == previous // every:  # no multiple of `every` reached since the last step seen
            return  # (one a GradScaler skipped, calling no hook, still counts: the update follows now)
        self.before_update()
        res = self.admm.update()
        broadcast_([*self.admm.state.buffers()])  # DDP: rank 0's Z, U and rho everywhere
        self.after_update(res)
        if bool(self.trainer.strategy.broadcast(self.admm.done, src=0)):  # one decision for every rank
            self.finish()

    def before_update(self) -> None:
        """Called before each Z/U update (the suite checks the loss is finite here)."""

    def after_update(self, res: dict[str, dict[str, float]]) -> None:
        """Called after each Z/U update with the residuals (the suite logs them here)."""

    def finish(self) -> None:
        """ADMM is done: hard-prune (``prune``), end the fit (``stop``)."""
        self.finished = True
        if self.prune:
            self.masks = self.admm.hard_prune()
            apply_masks(self.admm.model, self.masks)
        if self.stop:
            self.trainer.should_stop = True

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        """Masked weights go under their plain keys (the masks travel in this callback's state), so
        the checkpoint loads into the user's unmasked module; ``load_state_dict`` masks it again."""
        if self.masks is not None:
            checkpoint["state_dict"] = plain_state_dict(pl_module)

    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"masks": self.masks, "finished": self.finished}
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
        self.masks, self.finished = state.get("masks"), bool(state.get("finished", False))
        if self.masks is not None and not current_masks(self.admm.model):
            apply_masks(self.admm.model, self.masks)
        self._pending = None
