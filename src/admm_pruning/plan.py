"""The run's plan: per-layer targets and the epoch budget, resolved in one place and in two
explicit phases.

1. ``initial_plan``, before anything is trained or written: ``prune.keep`` scaled to ``prune.compression``
   (an unreachable target fails here), then the budget split for the pruner.
2. ``profiled_plan``, after pretraining, only for ``prune.profile`` sensitivity or
   global_magnitude: the per-layer split is derived from the dense model and the budget is
   recomputed for the new targets (progressive ADMM's round count depends on them).

Budget rule: with ``budget.epochs`` = B, every pruner trains B epochs after the shared dense
checkpoint: its own pruning epochs P, then retrain.epochs = B - P of the final retraining. An
explicit retrain.epochs that breaks the rule is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from omegaconf import DictConfig
from torch import nn

from admm_pruning.config import get_key
from admm_pruning.foundations.checks import as_number
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.pruners.base import Pruner
from admm_pruning.sensitivity import derive_keep
from admm_pruning.sparsity.targets import TargetError, scale_profile
from admm_pruning.store.descriptions import PretrainDesc
from admm_pruning.store.stages import StageCache
from admm_pruning.training.context import StageContext


@dataclass
class Plan:
    """The resolved targets and epoch split of one run."""

    keep: dict[str, float]
    target_compression: float | None
    pruning_epochs: float
    retrain_epochs: int
    profile: dict[str, Any] = field(default_factory=lambda: {"profile": "preset"})

    @property
    def budget_epochs(self) -> float:
        return self.pruning_epochs + self.retrain_epochs


def initial_targets(cfg: DictConfig, sizes: dict[str, int]) -> tuple[dict[str, float], float | None]:
    """Phase 1 targets: ``prune.keep``, scaled to exactly ``prune.compression`` when that is set."""
    keep = dict(cfg.prune.keep)
    compression = get_key(cfg, "prune.compression")
    if compression is None:
        return keep, None
    compression = as_number("prune.compression", compression)
    try:
        return scale_profile(sizes, keep, compression), compression
    except TargetError as exc:
        raise ConfigError(str(exc)) from exc


def split_budget(cfg: DictConfig, pruning_epochs: float) -> int:
    """Retraining epochs: ``retrain.epochs``, or what ``budget.epochs`` leaves after pruning."""
    retrain, budget = get_key(cfg, "retrain.epochs"), get_key(cfg, "budget.epochs")
    if budget is None:
        return int(retrain)
    left = float(budget) - pruning_epochs
    if left < 0 or abs(left - round(left)) > 1e-9:
        raise ConfigError(f"budget.epochs={budget}: pruner {cfg.pruner.name} trains {pruning_epochs:g} "
                          f"epochs, leaving {left:g} for retraining (must be a whole number >= 0)")
    if retrain is not None and int(retrain) != round(left):
        raise ConfigError(f"retrain.epochs={retrain} breaks budget.epochs={budget}: pruner "
                          f"{cfg.pruner.name} trains {pruning_epochs:g} epochs, so retraining gets "
                          f"{round(left)}; leave retrain.epochs=null to derive it")
    return round(left)


def initial_plan(cfg: DictConfig, pruner: Pruner, sizes: dict[str, int],
                 steps_per_epoch: Callable[[int], int]) -> Plan:
    """Phase 1: the targets as configured and the budget split for them."""
    keep, compression = initial_targets(cfg, sizes)
    return _with_budget(cfg, pruner, sizes, steps_per_epoch,
                        Plan(keep, compression, 0.0, 0, {"profile": cfg.prune.get("profile") or "preset"}))


def profiled_plan(cfg: DictConfig, plan: Plan, pruner: Pruner, ctx: StageContext, dense: nn.Module,
                  sizes: dict[str, int], cache: StageCache, parent: PretrainDesc) -> Plan:
    """Phase 2 (after pretraining): targets from the dense model for a sensitivity or global
    magnitude profile, with the budget recomputed for them."""
    keep, profile = derive_keep(plan.profile["profile"], ctx, dense, list(plan.keep), float(cfg.prune.compression),
                                list(cfg.prune.sensitivity_levels), cache, parent)
    return _with_budget(cfg, pruner, sizes, ctx.steps_per_epoch, replace(plan, keep=keep, profile=profile))


def _with_budget(cfg: DictConfig, pruner: Pruner, sizes: dict[str, int], steps_per_epoch: Callable[[int], int],
                 plan: Plan) -> Plan:
    pruning = pruner.pruning_epochs(steps_per_epoch, plan.keep, sizes)
    return replace(plan, pruning_epochs=pruning, retrain_epochs=split_budget(cfg, pruning))
