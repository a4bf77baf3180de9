"""ADMM pruning (Zhang et al. 2018) and its structured form (ADAM-ADMM), as the suite runs it: the
``ADMMPruning`` callback (the one implementation of ADMM, for the suite and for users) on the
dense ``ClassifierModule``, set to stop the fit when ADMM is done, to check the loss before each
projection and to log every Z/U update; then the hard prune to the l_i largest weights of W.
Progressive ADMM runs the same phase in rounds. The arithmetic (Z-step projections, rho and
learning-rate schedules, residuals) is ``sparsity/admm.py``, shared with the callback."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from admm_pruning.callback import ADMMPruning
from admm_pruning.models.layers import set_dropout
from admm_pruning.pruners.base import PruneJob, Pruner, PruneResult
from admm_pruning.sparsity.admm import ADMMSchedule, ADMMState, converged
from admm_pruning.sparsity.masks import hard_prune
from admm_pruning.training.context import StageContext
from admm_pruning.training.distributed import world
from admm_pruning.training.modules import ClassifierModule

log = logging.getLogger("admm_pruning")


class StageADMM(ADMMPruning):
    """The callback as the ADMM stage runs it: stop, do not prune; a finite loss before every
    projection; each update's residuals and rho logged at its step, and one progress line."""

    def __init__(self, module: ADMMModule, keep: dict[str, float], schedule: ADMMSchedule,
                 sparsity: dict[str, str] | None) -> None:
        super().__init__(keep, schedule, sparsity, update_every=module.steps_per_iteration, prune=False, stop=True)
        self.module = module
        self.build(module.model, module.steps_per_iteration)
        self._clock = (time.monotonic(), 0)  # (start, iteration at start) of this process's training

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # After a resume the clock starts at the restored iteration: the time left is estimated
        # from the iterations this process has run.
        self._clock = (time.monotonic(), int(self.admm.state.iteration))

    def before_update(self) -> None:
        self.module.loss_watch.check()  # never project a non-finite model

    def after_update(self, res: dict[str, dict[str, float]]) -> None:
        last = self.admm.history[-1]
        it, rho = last["iteration"], last["rho"]
        # the optimizer's step hook runs before Lightning counts the step: global_step is the step's index
        self.module.log_step({**{f"admm/{kind}/{layer}": value for kind, per_layer in res.items()
                                 for layer, value in per_layer.items()},
                              "admm/rho": rho, "admm/iteration": float(it)}, self.trainer.global_step)
        self._log_progress(it, rho, res)

    def _log_progress(self, it: int, rho: float, res: dict[str, dict[str, float]]) -> None:
        """One line per Z/U update, from rank 0: an ADMM stage trains for up to an hour and
        would otherwise print nothing until its end. Residuals are summed over the layers."""
        if world()[0] or not log.isEnabledFor(logging.INFO):
            return
        start, first = self._clock
        elapsed = time.monotonic() - start
        left = elapsed / max(1, it - first) * (self.schedule.iterations - it)
        last = self.module.last_val  # restored with a checkpoint: no "-" after a resume
        val = "-" if last is None else f"{last[0]:.4f} (epoch {last[1]})"
        log.info("ADMM iteration %d/%d: rho %.3g, primal %.4g, dual %.4g, val/acc %s, %.0f s elapsed, ~%.0f s left",
                 it, self.schedule.iterations, rho, sum(res["primal"].values()), sum(res["dual"].values()), val,
                 elapsed, left)


class ADMMModule(ClassifierModule):
    """W-step = task loss + L2 + rho_scale * rho * sum ||W - Z + U||^2 (the penalty enters as its
    exact gradient, see ``ADMMState.add_penalty_grad_``, added by the ``StageADMM`` callback); every
    ``steps_per_iteration`` optimizer steps the Z- and U-steps run and the residuals are logged.

    Training stops after ``schedule.iterations`` updates, or earlier once every layer's primal and
    dual residuals are <= ``schedule.eps``. Under DDP rank 0's Z, U, rho and stop decision are
    broadcast after each update, so the ranks can never drift apart (nor hang on a split stop).
    """

    def __init__(self, model: nn.Module, schedule: ADMMSchedule, keep: dict[str, float],
                 steps_per_epoch: int, sparsity: dict[str, str] | None = None,
                 num_classes: int | None = None) -> None:
        super().__init__(model, schedule.optimizer, l2=schedule.l2, num_classes=num_classes, stage="admm")
        self.schedule = schedule
        self.steps_per_epoch = steps_per_epoch
        self.steps_per_iteration = schedule.steps_per_iteration(steps_per_epoch)
        self.pruning = StageADMM(self, keep, schedule, sparsity)

    @property
    def admm(self) -> ADMMState:
        """Z, U, rho and the iteration count."""
        return self.pruning.admm.state

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per Z/U update: the iteration, the rho it used and the per-layer residuals."""
        return self.pruning.admm.history

    @property
    def converged(self) -> bool:
        """The last update's residuals are all <= eps (the papers' stop)."""
        last = self.history[-1] if self.history else None
        return bool(last) and converged({"primal": last["primal"], "dual": last["dual"]}, self.schedule.eps)

    def configure_callbacks(self) -> list[ADMMPruning]:
        return [self.pruning]

    def add_regularizer_grads_(self) -> None:
        """L2 on the layers ADMM does not penalise; the callback adds l2 * W with the penalty on the others."""
        self.add_l2_grads_(self.weight_params(), [n for n in self.layer_names if n not in self.admm.layers])

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint written before ADMM moved into the callback holds Z, U and rho as ``admm.*``
        module buffers: hand them to the callback."""
        old = {k.removeprefix("admm."): checkpoint["state_dict"].pop(k) for k in list(checkpoint["state_dict"])
               if k.startswith("admm.")}
        super().on_load_checkpoint(checkpoint)
        if old and not any(k.startswith("StageADMM") for k in checkpoint.get("callbacks", {})):
            self.pruning.load_state_dict({"admm": {"state": old, "steps": int(checkpoint.get("global_step", 0)),
                                                   "history": list(checkpoint.get("admm_history", []))}})

    def configure_optimizers(self) -> Any:
        opt = self.make_optimizer()
        if not (self.schedule.lr_drop_epochs or self.schedule.lr_policy):
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda step: self.schedule.lr_factor(step, self.steps_per_epoch))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


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
