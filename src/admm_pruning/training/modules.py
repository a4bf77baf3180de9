"""Lightning modules for the three stages: dense or masked training, and ADMM."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from admm_pruning.models.layers import num_outputs, prunable_layers
from admm_pruning.sparsity.admm import ADMMSchedule, ADMMState, converged
from admm_pruning.sparsity.masks import StepMasks, adapt_state_dict, current_masks, weight_param
from admm_pruning.training.distributed import broadcast_, world
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
        self.fast = FastPath(False, False, False)  # StageContext.fit sets the run's
        self.step_masks: StepMasks | None = None
        self.loss_watch = LossWatch(stage)

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
        self.loss_watch = LossWatch(self.stage, start=self.global_step)

    def on_train_epoch_end(self) -> None:
        self.loss_watch.check()  # before the epoch's checkpoint is written

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

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = F.cross_entropy(self.model(x), y)
        self.loss_watch.update(loss)
        if self.logs_this_step():
            self.loss_watch.check()
            self.log("train/loss", loss.detach(), on_step=True, on_epoch=False)
        return loss

    def logs_this_step(self) -> bool:
        """Whether Lightning hands this step's values to a logger: every ``log_every_n_steps``
        optimizer steps. ``self.log`` on the other steps is thrown away and costs about 0.5 ms
        of Python per call (benchmarks/throughput.py), 5% of a LeNet-5 step on 2 cores."""
        every = self.trainer.log_every_n_steps
        return bool(every) and self.logger is not None and (self.global_step + 1) % every == 0

    @torch.no_grad()
    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """L2 as its gradient, l2 * W (= d/dW of l2/2 ||W||^2), added in place.

        Here, not after backward: Lightning unscales mixed-precision gradients just before this
        hook (a term added earlier would be divided by the loss scale), and with gradient
        accumulation this hook runs once per optimizer step, not once per batch.
        """
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

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        adapt_state_dict(checkpoint["state_dict"], self)  # written with or without step masks
        if "torch_rng_state" in checkpoint:
            torch.set_rng_state(checkpoint["torch_rng_state"])


class ADMMModule(ClassifierModule):
    """W-step = task loss + L2 + rho_scale * rho * sum ||W - Z + U||^2 (the penalty enters as its
    exact gradient, see ``ADMMState.add_penalty_grad_``); every ``steps_per_iteration`` optimizer
    steps the Z- and U-steps run and the residuals are logged.

    Training stops after ``schedule.iterations`` updates, or earlier once every layer's primal and
    dual residuals are <= ``schedule.eps``.

    Under DDP the weights are identical on every rank after each optimizer step, so every rank
    projects to the same Z; rank 0's Z, U, rho and stop decision are still broadcast after each
    update, so the ranks can never drift apart (nor hang on a split stop decision), also with
    DDP's per-forward buffer broadcast switched off (conf/trainer/ddp.yaml).
    """

    def __init__(self, model: nn.Module, schedule: ADMMSchedule, keep: dict[str, float],
                 steps_per_epoch: int, sparsity: dict[str, str] | None = None,
                 num_classes: int | None = None) -> None:
        super().__init__(model, schedule.optimizer, l2=schedule.l2, num_classes=num_classes, stage="admm")
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.steps_per_iteration = schedule.steps_per_iteration(steps_per_epoch)
        self.admm = ADMMState({n: w for n, w in self.layer_weights().items() if n in keep}, keep, schedule, sparsity)
        self.history: list[dict[str, Any]] = []
        self.converged = False
        self._updated_at = -1  # the optimizer step of the last Z/U update
        self._clock = (time.monotonic(), 0)  # (start, iteration at start) of this process's training
        self._val_epoch = 0  # the epoch (from 1) of the latest validation

    def on_train_start(self) -> None:
        super().on_train_start()
        # After a resume the clock starts at the restored iteration: the time left is estimated
        # from the iterations this process has run.
        self._clock = (time.monotonic(), int(self.admm.iteration))

    def on_validation_epoch_end(self) -> None:
        self._val_epoch = self.current_epoch + 1

    @torch.no_grad()
    def add_regularizer_grads_(self) -> None:
        """L2 and the ADMM penalty; the penalised layers get both in one pass (add_penalty_grad_)."""
        params = self.weight_params()  # once a step: both terms read it
        self.add_l2_grads_(params, [n for n in self.layer_names if n not in self.admm.layers])
        self.admm.add_penalty_grad_(params, l2=self.l2)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        """The Z/U update, once per ``steps_per_iteration`` optimizer steps (with gradient
        accumulation several batches end on the same optimizer step: only the first counts)."""
        step = self.trainer.global_step
        if step == 0 or step % self.steps_per_iteration or step == self._updated_at:
            return
        self._updated_at = step
        self.loss_watch.check()  # never project a non-finite model
        rho = self.admm.rho.item()
        res = self.admm.update(self.layer_weights())
        broadcast_(self.admm.buffers())
        it = int(self.admm.iteration)
        self.history.append({"iteration": it, "rho": rho, **res})
        for kind, per_layer in res.items():
            for layer, value in per_layer.items():
                self.log(f"admm/{kind}/{layer}", value, on_step=True, on_epoch=False)
        self.log("admm/rho", rho, on_step=True, on_epoch=False)
        self.log("admm/iteration", float(it), on_step=True, on_epoch=False)
        self._log_progress(it, rho, res)
        self.converged = bool(self.trainer.strategy.broadcast(converged(res, self.schedule.eps), src=0))
        # Stopped here rather than by Trainer(max_steps): Lightning resumes an end-of-epoch
        # checkpoint exactly only in max_epochs mode.
        if self.converged or it >= self.schedule.iterations:
            self.trainer.should_stop = True

    def _log_progress(self, it: int, rho: float, res: dict[str, dict[str, float]]) -> None:
        """One line per Z/U update, from rank 0: an ADMM stage trains for up to an hour and
        would otherwise print nothing until its end. Residuals are summed over the layers."""
        if world()[0] or not log.isEnabledFor(logging.INFO):
            return
        start, first = self._clock
        elapsed = time.monotonic() - start
        left = elapsed / (it - first) * (self.schedule.iterations - it)
        acc = self.trainer.callback_metrics.get("val/acc")
        val = "-" if acc is None else f"{float(acc):.4f} (epoch {self._val_epoch})"
        log.info("ADMM iteration %d/%d: rho %.3g, primal %.4g, dual %.4g, val/acc %s, %.0f s elapsed, ~%.0f s left",
                 it, self.schedule.iterations, rho, sum(res["primal"].values()), sum(res["dual"].values()), val,
                 elapsed, left)

    def configure_optimizers(self) -> Any:
        opt = self.make_optimizer()
        if not self.schedule.lr_drop_epochs:
            return opt
        period = self.steps_per_iteration
        drop = max(1, round(self.schedule.lr_drop_epochs * self.steps_per_epoch))
        gamma, reset = self.schedule.lr_drop_gamma, self.schedule.lr_reset_each_iteration

        def factor(step: int) -> float:
            return gamma ** ((step % period if reset else step) // drop)

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["admm_history"] = self.history
        checkpoint["admm_converged"] = self.converged
        checkpoint["admm_updated_at"] = self._updated_at

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)
        self.history = list(checkpoint.get("admm_history", []))
        self.converged = bool(checkpoint.get("admm_converged", False))
        self._updated_at = int(checkpoint.get("admm_updated_at", -1))
