"""The ADMM W-step as a Lightning module: task loss, L2 and the penalty; Z/U updates on schedule."""

from __future__ import annotations

import logging
import time
from typing import Any

import torch
from torch import nn

from admm_pruning.sparsity.admm import ADMMSchedule, ADMMState, converged
from admm_pruning.training.distributed import broadcast_, world
from admm_pruning.training.modules import ClassifierModule

log = logging.getLogger("admm_pruning")


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
        groups = {n: getattr(model.get_submodule(n), "groups", 1) for n in keep}
        self.admm = ADMMState({n: w for n, w in self.layer_weights().items() if n in keep}, keep, schedule, sparsity,
                              groups)
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
        if self.automatic_optimization:  # else run_chunk calls it after each of its steps
            self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
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
        self.log_step({**{f"admm/{kind}/{layer}": value for kind, per_layer in res.items()
                          for layer, value in per_layer.items()},
                       "admm/rho": rho, "admm/iteration": float(it)}, step - 1)
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
        if not (self.schedule.lr_drop_epochs or self.schedule.lr_policy):
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: self.schedule.lr_factor(step, self.steps_per_epoch))
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
