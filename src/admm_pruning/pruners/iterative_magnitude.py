"""Iterative magnitude pruning to the targets over rounds, surviving weights kept: Han et al.'s
schedule with exact top-k rounds and without Han's own threshold rule and retraining recipe
(``pruners/han.py`` is Han's method)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from admm_pruning.foundations.checks import dropout_rate, non_negative, positive
from admm_pruning.foundations.files import load_tensors, save_tensors
from admm_pruning.pruners.base import PruneJob, Pruner, PruneResult
from admm_pruning.sparsity.masks import apply_masks, magnitude_masks, remove_masks
from admm_pruning.store.descriptions import RoundDesc
from admm_pruning.training.distributed import is_launch_rank_zero
from admm_pruning.training.modules import OptimizerFactory
from admm_pruning.training.recipe import Recipe, train

log = logging.getLogger("admm_pruning")


def dropout_for(p0: float, masks: dict[str, torch.Tensor], layer: str | None) -> float:
    """Han et al. 2015: D_r = D_o * sqrt(C_ir / C_io), C the pruned layer's connections."""
    if layer not in masks:
        return p0
    return p0 * (int(masks[layer].sum()) / masks[layer].numel()) ** 0.5


class IterativeMagnitudePruner(Pruner):
    """``rounds`` of prune-then-retrain with surviving weights kept: round r keeps keep_i ** (r /
    rounds) of each layer by exact top-k magnitude, so the last round lands on the targets.

    Rounds 1..R-1 retrain by this pruner's recipe (dropout scaled by the density of
    ``dropout_layer``, as Han et al.); the last round's retraining is the final retrain stage,
    with the shared recipe. Each round is a cached sub-stage of the prune stage.
    """

    name = "iterative_magnitude"

    def __init__(self, optimizer: OptimizerFactory, rounds: int = 3, epochs_per_round: int = 2,
                 batch_size: int = 50, l2: float = 5e-5, dropout: float = 0.5,
                 dropout_layer: str | None = None) -> None:
        for key, value in (("rounds", rounds), ("epochs_per_round", epochs_per_round), ("batch_size", batch_size)):
            positive(f"pruner.{key}", value)
        non_negative("pruner.l2", l2)
        dropout_rate("pruner.dropout", dropout)
        self.optimizer, self.rounds, self.epochs_per_round = optimizer, rounds, epochs_per_round
        self.batch_size, self.l2, self.dropout, self.dropout_layer = batch_size, l2, dropout, dropout_layer

    def pruning_epochs(self, steps_per_epoch: Callable[[int], int], keep: dict[str, float],
                       sizes: dict[str, int]) -> float:
        return float((self.rounds - 1) * self.epochs_per_round)

    def round_masks(self, model: nn.Module, keep: dict[str, float], r: int) -> tuple[dict[str, torch.Tensor],
                                                                                      dict[str, Any]]:
        """Round r's masks and what to record about them."""
        return magnitude_masks(model, {n: f ** (r / self.rounds) for n, f in keep.items()}), {}

    def round_recipe(self, masks: dict[str, torch.Tensor]) -> Recipe:
        return Recipe(epochs=self.epochs_per_round, batch_size=self.batch_size, optimizer=self.optimizer,
                      l2=self.l2, dropout=dropout_for(self.dropout, masks, self.dropout_layer))

    def prune(self, job: PruneJob) -> PruneResult:
        history: list[dict[str, Any]] = []
        start = time.monotonic()
        for r in range(1, self.rounds + 1):
            remove_masks(job.model)
            masks, info = self.round_masks(job.model, job.keep, r)
            apply_masks(job.model, masks)
            entry = {"round": r, "kept": {n: int(m.sum()) for n, m in masks.items()}, **info}
            if r < self.rounds:
                entry.update(self._retrain_round(job, masks, r))
            history.append(entry)
            self._log_round(entry, masks, time.monotonic() - start)
        return PruneResult(masks, {"rounds": history})

    def _log_round(self, entry: dict[str, Any], masks: dict[str, torch.Tensor], elapsed: float) -> None:
        """One line per round (rank 0): each retrains for minutes, with nothing else printed."""
        if not is_launch_rank_zero():
            return
        kept = sum(entry["kept"].values()) / sum(m.numel() for m in masks.values())
        if entry["round"] == self.rounds:
            after = "retrained by the retrain stage"
        else:  # validation only: test is read once, on the final model (None: no val split, or an old stage)
            acc = entry.get("val_acc")
            after = f"val acc {'-' if acc is None else f'{acc:.4f}'} after retraining"
        log.info("%s round %d/%d: keeps %.2f%% of the pruned layers' weights (%.2fx), %s, %.0f s elapsed",
                 self.name, entry["round"], self.rounds, 100 * kept, 1 / kept, after, elapsed)

    def _retrain_round(self, job: PruneJob, masks: dict[str, torch.Tensor], r: int) -> dict[str, Any]:
        """Round r's retraining as a cached sub-stage; a resumed run continues from its weights."""
        recipe = self.round_recipe(masks)

        def compute(d: Path, resume: Path | None) -> dict[str, Any]:
            train(job.ctx, job.model, recipe, f"round{r}-retrain", d, resume)
            save_tensors(d / "weights.pt", {k: v.detach().cpu() for k, v in job.model.state_dict().items()})
            return {"dropout": recipe.dropout, "val_acc": job.ctx.val_score(job.model)}

        done = job.cache.run(RoundDesc(r, recipe.settings()), compute)
        if done.cached:
            job.model.load_state_dict(load_tensors(done.dir / "weights.pt"))
        return {"dropout": done.metrics["dropout"], "val_acc": done.metrics.get("val_acc")}
