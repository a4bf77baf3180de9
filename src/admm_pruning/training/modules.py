"""Lightning modules for the three stages: dense or masked training, and ADMM."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from lightning_fabric.plugins.precision.amp import _optimizer_handles_unscaling
from torch import nn
from torch.amp.grad_scaler import OptState
from torchmetrics.classification import MulticlassAccuracy

from admm_pruning.models.layers import num_outputs, prunable_layers
from admm_pruning.sparsity.masks import StepMasks, adapt_state_dict, current_masks, weight_param
from admm_pruning.training.chunks import carry_step_count, check_schedulers, run_chunk
from admm_pruning.training.fast import (
    FastPath,
    build_optimizer,
    has_convolutions,
    match_state_layout,
    set_memory_format,
)
from admm_pruning.training.guards import LossWatch

log = logging.getLogger("admm_pruning")

OptimizerFactory = Callable[..., torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler]


def unscale_fused_(trainer: pl.Trainer, optimizer: torch.optim.Optimizer) -> None:
    """Unscale fp16 gradients that Lightning left scaled. Lightning skips its unscale for optimizers
    that unscale inside their own step (fused Adam/SGD), so a term added to the gradients now would
    be divided by the loss scale there; unscaled here, the GradScaler hands the optimizer no scale
    and still skips a step with inf/NaN gradients."""
    scaler = getattr(trainer.precision_plugin, "scaler", None)
    if scaler is None or not _optimizer_handles_unscaling(optimizer):
        return
    if scaler._per_optimizer_states[id(optimizer)]["stage"] is not OptState.UNSCALED:  # once per step
        scaler.unscale_(optimizer)


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training with an optional L2 term, l2/2 * sum ||W||^2 over prunable weights
    (the TF code's 5e-5 * 1/2 ||W||^2), applied as its gradient just before each optimizer step. Masked
    retraining is this module on a masked model. The logged train/loss is the cross-entropy.

    Accuracy is top-1 (``val/acc``, ``test/acc``) and, with 5 classes or more, top-5
    (``val/acc_top5``, ``test/acc_top5``: the ImageNet papers' figure). ``num_classes`` defaults
    to the model's output width. ``lr_scheduler`` (a factory taking the optimizer) steps once per
    epoch, e.g. Caffe's step policy as StepLR.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: OptimizerFactory,
        l2: float = 0.0,
        num_classes: int | None = None,
        stage: str = "train",
        lr_scheduler: SchedulerFactory | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.l2 = l2
        self.stage = stage
        self.layer_names = list(prunable_layers(model))
        num_classes = num_classes or num_outputs(model)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")
        self.top5 = num_classes >= 5
        if self.top5:
            self.val_acc5 = MulticlassAccuracy(num_classes, top_k=5, average="micro")
            self.test_acc5 = MulticlassAccuracy(num_classes, top_k=5, average="micro")
        self.fast = FastPath(False, False, False, 1)  # StageContext.fit sets the run's
        self.step_masks: StepMasks | None = None
        self.loss_watch = LossWatch(stage)
        self._resumed_at: int | None = None  # the optimizer step of a checkpoint being resumed
        self.last_val: tuple[float, int] | None = None  # (val/acc, epoch from 1) of the latest validation
        self._clock = (time.monotonic(), 0)  # (start, epoch at start) of this process's training

    def setup(self, stage: str) -> None:
        # For the fit only: everything outside it (masks, export, hashing) sees parametrized NCHW weights.
        if self.fast.step_masks and current_masks(self.model):
            self.step_masks = StepMasks(self.model)
        if self.fast.channels_last and has_convolutions(self.model):
            set_memory_format(self, channels_last=True)
        if self.step_masks is not None:
            self.step_masks.refresh()

    def teardown(self, stage: str) -> None:
        if self.fast.channels_last and has_convolutions(self.model):
            set_memory_format(self, channels_last=False)
        if self.step_masks is not None:
            self.step_masks.restore(self.model)
            self.step_masks = None

    def on_train_start(self) -> None:
        for opt in self.trainer.optimizers:  # a resumed checkpoint may hold the other layout
            match_state_layout(opt)
        if not self.automatic_optimization:
            check_schedulers(self.trainer)
        if self._resumed_at is not None:  # ... or have been written by the other loop
            carry_step_count(self.trainer, self._resumed_at)
            self._resumed_at = None
        self.loss_watch = LossWatch(self.stage, start=self.global_step)
        self._clock = (time.monotonic(), self.current_epoch)

    def on_validation_epoch_end(self) -> None:
        acc = self.trainer.callback_metrics.get("val/acc")
        if acc is not None and not self.trainer.sanity_checking:
            self.last_val = (float(acc), self.current_epoch + 1)

    def on_train_epoch_end(self) -> None:
        self.loss_watch.check()  # before the epoch's checkpoint is written
        self._log_epoch()

    def _log_epoch(self) -> None:
        """One line per epoch from rank 0 (a stage can train for many minutes with its output in a file)."""
        if self.trainer.global_rank or not log.isEnabledFor(logging.INFO):
            return
        epoch, total = self.current_epoch + 1, self.trainer.max_epochs
        start, first = self._clock
        elapsed = time.monotonic() - start
        left = elapsed / max(1, epoch - first) * max(0, total - epoch)
        loss = self.loss_watch.epoch_mean()
        val = "-" if self.last_val is None else f"{self.last_val[0]:.4f}"
        log.info("%s epoch %d/%d: loss %s, val/acc %s, %.0f s elapsed, ~%.0f s left", self.stage, epoch, total,
                 "-" if loss is None else f"{loss:.4f}", val, elapsed, left)

    def make_optimizer(self) -> torch.optim.Optimizer:
        return build_optimizer(self.optimizer_factory, self.model.parameters(), self.fast.fused_optimizer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def layer_weights(self) -> dict[str, torch.Tensor]:
        """Effective (masked, if masked) weights of the prunable layers."""
        return {n: self.model.get_submodule(n).weight for n in self.layer_names}

    def weight_params(self) -> dict[str, tuple[nn.Parameter, torch.Tensor | None]]:
        """The optimized parameter behind each prunable weight, with its mask if masked."""
        return {n: weight_param(self.model.get_submodule(n)) for n in self.layer_names}

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.automatic_optimization:
            return self.task_loss(batch)
        run_chunk(self, batch, batch_idx)  # fast.steps_per_batch batches (training/chunks.py)
        return None

    def task_loss(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.loss_watch.update(loss)
        if self.logs_this_step():
            self.loss_watch.check()
            self.log_step({"train/loss": loss.detach()}, self.global_step)
        return loss

    def after_optimizer_step(self) -> None:
        """What follows each optimizer step (ADMM's Z/U update)."""

    def log_step(self, values: dict[str, Any], step: int) -> None:
        """Step values written to the loggers now, at ``step``: Lightning's logging step, its count of
        optimizer steps before this batch's. Not through ``self.log``, which hands a value to the
        loggers at its next logging step, again at every later one of the epoch, and never
        inside a batch of several steps (training/chunks.py)."""
        if not self.loggers:
            return
        scalars = {name: float(value) for name, value in values.items()} | {"epoch": self.current_epoch}
        for logger in self.loggers:
            logger.log_metrics(scalars, step=step)

    def logs_this_step(self) -> bool:
        """Whether this step's loss is logged: every ``log_every_n_steps`` optimizer steps, at the
        steps Lightning's own logging would write. Reading the loss back is a host sync."""
        every = self.trainer.log_every_n_steps
        return bool(every) and self.logger is not None and (self.global_step + 1) % every == 0

    @torch.no_grad()
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """L2 as its gradient, l2 * W (= d/dW of l2/2 ||W||^2), added in place.

        Here, not after backward: Lightning unscales mixed-precision gradients just before this
        hook (a term added earlier would be divided by the loss scale), and with gradient
        accumulation this hook runs once per optimizer step, not once per batch.
        """
        unscale_fused_(self.trainer, optimizer)
        self.add_regularizer_grads_()
        if self.step_masks is not None:  # last: every term above is masked with the task gradient
            self.step_masks.mask_grads_()

    def add_regularizer_grads_(self) -> None:
        self.add_l2_grads_(self.weight_params(), self.layer_names)

    def add_l2_grads_(self, params: dict[str, tuple[nn.Parameter, torch.Tensor | None]], layers: list[str]) -> None:
        """l2 * W added to the gradients of ``layers``, in one fused pass where none is masked."""
        pairs = [params[n] for n in layers if params[n][0].grad is not None]
        if not self.l2 or not pairs:
            return
        torch._foreach_add_([w.grad for w, _ in pairs], [w if m is None else w * m for w, m in pairs],
                            alpha=self.l2)

    def _score(self, split: str, batch: tuple[torch.Tensor, torch.Tensor]) -> None:
        x, y = batch
        logits = self.model(x)
        top1 = getattr(self, f"{split}_acc")
        top1.update(logits, y)
        self.log(f"{split}/acc", top1, on_step=False, on_epoch=True)
        if self.top5:
            top5 = getattr(self, f"{split}_acc5")
            top5.update(logits, y)
            self.log(f"{split}/acc_top5", top5, on_step=False, on_epoch=True)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._score("val", batch)

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        self._score("test", batch)

    def configure_optimizers(self) -> Any:
        opt = self.make_optimizer()
        if self.scheduler_factory is None:
            return opt
        return {"optimizer": opt, "lr_scheduler": {"scheduler": self.scheduler_factory(opt), "interval": "epoch"}}

    # Global RNG (dropout) travels with the checkpoint so a resumed run continues the same stream.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["torch_rng_state"] = torch.get_rng_state()
        checkpoint["last_val"] = self.last_val

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        adapt_state_dict(checkpoint["state_dict"], self)  # written with or without step masks
        self._resumed_at = int(checkpoint.get("global_step", 0))
        self.last_val = tuple(checkpoint["last_val"]) if checkpoint.get("last_val") else None
        log.info("resuming %s from epoch %d (optimizer step %d)", self.stage, int(checkpoint.get("epoch", 0)) + 1,
                 self._resumed_at)
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])
