"""A dense or masked training recipe (pretraining, retraining, a pruner's own rounds) as a typed
dataclass, and the one function that trains a model by it."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn

from admm_pruning.models.layers import set_dropout
from admm_pruning.training.context import StageContext
from admm_pruning.training.modules import ClassifierModule, OptimizerFactory, SchedulerFactory


@dataclass(frozen=True)
class Recipe:
    """Epochs, batch size, L2 (l2/2 ||W||^2 on the prunable weights), dropout, optimizer and an
    optional per-epoch lr schedule (both factories, as Hydra's ``_partial_`` builds them)."""

    epochs: int
    batch_size: int
    optimizer: OptimizerFactory
    l2: float = 0.0
    dropout: float = 0.0
    lr_scheduler: SchedulerFactory | None = field(default=None)

    @classmethod
    def from_cfg(cls, node: DictConfig, epochs: int | None = None) -> Recipe:
        """From a ``pretrain``/``retrain`` node; keys that are not recipe fields (``checkpoint``) are
        the caller's. ``epochs`` replaces the node's (the budget rule derives it)."""
        from hydra.utils import instantiate

        values = {f.name: node.get(f.name) for f in fields(cls) if node.get(f.name) is not None}
        values["optimizer"] = instantiate(node.optimizer)
        if values.get("lr_scheduler") is not None:
            values["lr_scheduler"] = instantiate(node.lr_scheduler)
        if epochs is not None:
            values["epochs"] = epochs
        return cls(**values)

    def with_lr_scale(self, scale: float) -> Recipe:
        """The same recipe with the optimizer's lr multiplied (Han: retrain at 1/10 of the original)."""
        opt = self.optimizer
        if not isinstance(opt, functools.partial) or "lr" not in opt.keywords:
            raise ValueError(f"cannot scale the lr of optimizer {opt!r}: give it as a partial with lr=")
        scaled = functools.partial(opt.func, *opt.args, **{**opt.keywords, "lr": opt.keywords["lr"] * scale})
        return replace(self, optimizer=scaled)

    def with_dropout_scaled(self, masks: dict[str, torch.Tensor], layer: str | None) -> Recipe:
        """Han et al.'s dropout rule, D = D_o * sqrt(kept fraction of ``layer``), resolved for these
        masks: a layer that keeps 0.45% of its connections would otherwise lose half of its few
        surviving paths at every step. ``layer`` None (or not masked) keeps the rate as it is."""
        if layer is None or layer not in masks:
            return self
        kept = int(masks[layer].sum()) / masks[layer].numel()
        return replace(self, dropout=self.dropout * kept ** 0.5)

    def settings(self) -> dict[str, Any]:
        """Plain data for stage keys: factories by their repr (type and keywords)."""
        return {f.name: repr(getattr(self, f.name)) if f.name in ("optimizer", "lr_scheduler")
                else getattr(self, f.name) for f in fields(self)}


def train(ctx: StageContext, model: nn.Module, recipe: Recipe, stage: str, stage_dir: Path,
          resume: Path | None) -> None:
    """Train ``model`` (masked or not) by ``recipe`` as its own resumable Lightning run."""
    set_dropout(model, recipe.dropout)
    module = ClassifierModule(model, recipe.optimizer, l2=recipe.l2, stage=stage, lr_scheduler=recipe.lr_scheduler)
    ctx.fit(module, stage, stage_dir, resume, recipe.batch_size, max_epochs=recipe.epochs)
