"""Pruners: each turns a dense model into (weights, masks) for the shared masked retraining.

A pruner is built from ``conf/pruner/<name>.yaml`` and exposes ``name``, ``pruning_epochs``
(its share of the epoch budget) and ``run(ctx, model, keep, stage_dir, resume)``, which saves
``weights.pt`` and ``masks.pt`` in the stage folder and returns the stage metrics.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .admm import ADMMState
from .data import MNISTData
from .masks import apply_masks, global_magnitude_masks, magnitude_masks, remove_masks
from .models import prunable_layers, set_dropout
from .modules import ADMMModule, ClassifierModule, OptimizerFactory
from .projections import keep_count
from .stages import StageCache, load_tensors, save_tensors
from .training import StageContext


def _finish(ctx: StageContext, model: nn.Module, masks: dict[str, torch.Tensor], stage_dir: Path,
            metrics: dict[str, Any]) -> dict[str, Any]:
    """Save the (unmasked) weights and the masks; measure accuracy right after the prune."""
    remove_masks(model)
    save_tensors(stage_dir / "weights.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})
    save_tensors(stage_dir / "masks.pt", masks)
    apply_masks(model, masks)
    return {**metrics, "pruned_acc": ctx.evaluate(model)}


class ADMMPruner:
    """Zhang et al. 2018: ADMM iterations, then the hard prune to the l_i largest weights.

    Defaults (conf/pruner/admm.yaml) are the authors' TF LeNet recipe: Adam lr 1e-3, rho 1e-4
    constant, penalty rho/2 * ||W-Z+U||^2, L2 5e-5/2 * ||W||^2, no dropout, 30 iterations.
    ``sparsity`` (layer -> filter, channel, shape, row, column; default unstructured) makes it
    ADAM-ADMM's structured pruning: the Z-step and the hard prune keep the groups of largest
    L2 norm, so the final masks are structured.
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
        sparsity: dict[str, str] | None = None,
        **_: Any,
    ) -> None:
        self.optimizer = optimizer
        self.sparsity = dict(sparsity or {})
        self.iterations = iterations
        self.epochs_per_iteration = epochs_per_iteration
        self.batch_size = batch_size
        self.rho, self.rho_scale = rho, rho_scale
        self.rho_multiplier, self.rho_max = rho_multiplier, rho_max
        self.eps, self.l2, self.dropout = eps, l2, dropout
        self.lr_drop_epochs, self.lr_drop_gamma = lr_drop_epochs, lr_drop_gamma
        self.lr_reset_each_iteration = lr_reset_each_iteration

    def steps_per_iteration(self, steps_per_epoch: int) -> int:
        return max(1, round(self.epochs_per_iteration * steps_per_epoch))

    def pruning_epochs(self, data: MNISTData, **_: Any) -> float:
        steps_per_epoch = data.steps_per_epoch(self.batch_size)
        return self.iterations * self.steps_per_iteration(steps_per_epoch) / steps_per_epoch

    def run(self, ctx: StageContext, model: nn.Module, keep: dict[str, float],
            stage_dir: Path, resume: Path | None) -> dict[str, Any]:
        steps_per_epoch = ctx.data.steps_per_epoch(self.batch_size)
        steps = self.steps_per_iteration(steps_per_epoch)
        drop = round(self.lr_drop_epochs * steps_per_epoch) if self.lr_drop_epochs else None
        set_dropout(model, self.dropout)
        module = ADMMModule(
            model, self.optimizer, keep, steps, self.iterations, self.rho, rho_scale=self.rho_scale,
            rho_multiplier=self.rho_multiplier, rho_max=self.rho_max, eps=self.eps, l2=self.l2,
            lr_drop_steps=drop, lr_drop_gamma=self.lr_drop_gamma,
            lr_reset_each_iteration=self.lr_reset_each_iteration)
        if self.sparsity:  # ADMMModule builds unstructured Z and U: replace them with the structured ones
            module.admm = ADMMState(
                {n: w for n, w in module.layer_weights().items() if n in keep}, keep, self.rho,
                rho_scale=self.rho_scale, rho_multiplier=self.rho_multiplier, rho_max=self.rho_max,
                sparsity=self.sparsity)
        epochs = -(-self.iterations * steps // steps_per_epoch)  # the module stops at the last update
        ctx.fit(module, "admm", stage_dir, resume, self.batch_size, max_epochs=epochs)
        metrics = {
            "admm_acc": ctx.evaluate(model),
            "steps_per_iteration": steps,
            "iterations_run": int(module.admm.iteration),
            "converged": module.converged,
            "residuals": module.history,
        }
        return _finish(ctx, model, magnitude_masks(model, keep, self.sparsity), stage_dir, metrics)


class OneShotPruner:
    """Magnitude pruning to the targets in one step: ADMM with the ADMM removed."""

    name = "oneshot"

    def __init__(self, **_: Any) -> None:
        pass

    def pruning_epochs(self, data: MNISTData, **_: Any) -> float:
        return 0.0

    def masks(self, model: nn.Module, keep: dict[str, float]) -> dict[str, torch.Tensor]:
        return magnitude_masks(model, keep)

    def run(self, ctx: StageContext, model: nn.Module, keep: dict[str, float],
            stage_dir: Path, resume: Path | None) -> dict[str, Any]:
        return _finish(ctx, model, self.masks(model, keep), stage_dir, {})


class GlobalMagnitudePruner(OneShotPruner):
    """One magnitude threshold across the target layers, keeping as many weights in total as the
    per-layer targets do (so compressions match); the per-layer split is the method's choice."""

    name = "global_magnitude"

    def masks(self, model: nn.Module, keep: dict[str, float]) -> dict[str, torch.Tensor]:
        layers = prunable_layers(model)
        k = sum(keep_count(layers[n].weight.numel(), f) for n, f in keep.items())
        return global_magnitude_masks(model, list(keep), k)


def han_dropout(p0: float, kept_connections: int, dense_connections: int) -> float:
    """Han et al. 2015: D_r = D_o * sqrt(C_ir / C_io) for the pruned layer's connections."""
    return p0 * math.sqrt(kept_connections / dense_connections)


class HanPruner:
    """Han et al. 2015 iterative magnitude pruning: ``rounds`` of prune then masked retraining.

    Targets: with ``quality`` (layer -> q), each round prunes the weights below q * std of the
    layer's surviving weights; without it, round r keeps keep_i ** (r / rounds) of each layer, so
    the last round lands exactly on the targets. The last round's retraining is the shared
    retrain stage, so the stage itself trains (rounds - 1) * epochs_per_round epochs. Surviving
    weights are kept, never re-initialised. Dropout is scaled by sqrt(C_r / C_o) of
    ``dropout_layer``'s connections.
    """

    name = "han"

    def __init__(
        self,
        optimizer: OptimizerFactory,
        rounds: int = 3,
        epochs_per_round: float = 2,
        batch_size: int = 50,
        quality: dict[str, float] | None = None,
        l2: float = 5e-5,
        dropout: float = 0.5,
        dropout_layer: str | None = None,
        **_: Any,
    ) -> None:
        self.optimizer, self.rounds, self.epochs_per_round = optimizer, rounds, epochs_per_round
        self.batch_size, self.quality, self.l2 = batch_size, quality, l2
        self.dropout, self.dropout_layer = dropout, dropout_layer

    def pruning_epochs(self, data: MNISTData, **_: Any) -> float:
        return (self.rounds - 1) * self.epochs_per_round

    def _masks(self, model: nn.Module, keep: dict[str, float], r: int) -> dict[str, torch.Tensor]:
        layers = prunable_layers(model)
        if self.quality is None:
            return magnitude_masks(model, {n: f ** (r / self.rounds) for n, f in keep.items()})
        out = {}
        for n, q in self.quality.items():
            w = layers[n].weight.detach()
            alive = w[w != 0]
            out[n] = (w.abs() >= q * alive.std()) & (w != 0)
        return out

    def run(self, ctx: StageContext, model: nn.Module, keep: dict[str, float],
            stage_dir: Path, resume: Path | None) -> dict[str, Any]:
        rounds = StageCache(stage_dir / "rounds")
        history: list[dict[str, Any]] = []
        masks: dict[str, torch.Tensor] = {}
        for r in range(1, self.rounds + 1):
            remove_masks(model)
            masks = self._masks(model, keep, r)
            apply_masks(model, masks)
            if r == self.rounds:
                break

            def retrain(d: Path, res: Path | None, r: int = r,
                        masks: dict[str, torch.Tensor] = masks) -> dict[str, Any]:
                p = self.dropout
                if self.dropout_layer in masks:
                    p = han_dropout(p, int(masks[self.dropout_layer].sum()), masks[self.dropout_layer].numel())
                set_dropout(model, p)
                module = ClassifierModule(model, self.optimizer, l2=self.l2, stage=f"han-round{r}")
                ctx.fit(module, f"han-round{r}", d, res, self.batch_size,
                        max_epochs=max(1, round(self.epochs_per_round)))
                save_tensors(d / "weights.pt", {k: v.detach().cpu() for k, v in model.state_dict().items()})
                return {"round": r, "dropout": p, "acc": ctx.evaluate(model),
                        "kept": {n: int(m.sum()) for n, m in masks.items()}}

            done = rounds.run(f"round{r}", {"round": r}, retrain)
            if done.cached:  # resumed run: continue from the finished round's weights
                model.load_state_dict(load_tensors(done.dir / "weights.pt"))
            history.append(done.metrics)
        return _finish(ctx, model, masks, stage_dir, {"rounds": history})
