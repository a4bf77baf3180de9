"""Pretrain -> prune (pruner stage) -> masked retrain, each a cached stage; then the results."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from .config import Plan, resolve, validate
from .loggers import log_summary
from .masks import apply_masks, plain_state_dict
from .models import prunable_layers, set_dropout
from .modules import ClassifierModule
from .results import count_sparsity, table_rows, write_table
from .stages import StageCache, load_tensors, save_tensors, write_json
from .training import StageContext

log = logging.getLogger("admm_pruning")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def stage_settings(cfg: DictConfig, plan: Plan) -> dict[str, dict[str, Any]]:
    """What shapes each stage; a stage's folder hash covers its parent's settings too."""
    data = {k: v for k, v in _plain(cfg.data).items() if k not in ("data_dir", "download")}
    numerics = {k: cfg.trainer.get(k) for k in ("precision", "deterministic")}
    pretrain = {"model": _plain(cfg.model), "data": data, "seed": cfg.seed,
                "pretrain": _plain(cfg.pretrain), "numerics": numerics}
    prune = {"parent": pretrain, "pruner": _plain(cfg.pruner), "keep": plan.keep}
    retrain = {"parent": prune, "retrain": {**_plain(cfg.retrain), "epochs": plan.retrain_epochs}}
    return {"pretrain": pretrain, "prune": prune, "retrain": retrain}


def _train_dense(ctx: StageContext, cfg: DictConfig, model: nn.Module, d: Path,
                 resume: Path | None) -> dict[str, Any]:
    set_dropout(model, cfg.pretrain.dropout)
    module = ClassifierModule(model, instantiate(cfg.pretrain.optimizer), l2=cfg.pretrain.l2,
                              stage="pretrain")
    ctx.fit(module, "pretrain", d, resume, cfg.pretrain.batch_size, max_epochs=cfg.pretrain.epochs)
    save_tensors(d / "weights.pt", plain_state_dict(model))
    return {"dense_acc": ctx.evaluate(model)}


def _retrain(ctx: StageContext, cfg: DictConfig, epochs: int, model: nn.Module,
             masks: dict[str, torch.Tensor], d: Path, resume: Path | None) -> dict[str, Any]:
    apply_masks(model, masks)
    set_dropout(model, cfg.retrain.dropout)
    module = ClassifierModule(model, instantiate(cfg.retrain.optimizer), l2=cfg.retrain.l2,
                              stage="retrain")
    ctx.fit(module, "retrain", d, resume, cfg.retrain.batch_size, max_epochs=epochs)
    save_tensors(d / "weights.pt", plain_state_dict(model))
    save_tensors(d / "masks.pt", masks)
    return {"final_acc": ctx.evaluate(model)}


def run_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Run (or reuse) every stage and write summary.json and table.md; returns the summary."""
    start = time.perf_counter()

    def build() -> nn.Module:
        """A fresh model, initialised from the run's seed (same init in every process)."""
        torch.manual_seed(cfg.seed)
        return instantiate(cfg.model.net)

    validate(cfg, build())
    data = instantiate(cfg.data).setup()  # fails here, before any folder is written
    pruner = instantiate(cfg.pruner)
    plan = resolve(cfg, build(), pruner.pruning_epochs(data))
    logger_factory = instantiate(cfg.logger) if cfg.get("logger") else None
    ctx = StageContext(data=data, trainer_kwargs=_plain(cfg.trainer), seed=cfg.seed,
                       experiment=cfg.experiment_name, logger_factory=logger_factory, tags=[pruner.name, cfg.data.name])
    cache = StageCache(Path(cfg.paths.artifacts_dir) / "stages")
    settings = stage_settings(cfg, plan)
    layers = list(prunable_layers(build()))

    def dense(d: Path, resume: Path | None) -> dict[str, Any]:
        return _train_dense(ctx, cfg, build(), d, resume)

    def prune(d: Path, resume: Path | None) -> dict[str, Any]:
        model = build()
        model.load_state_dict(load_tensors(stages["pretrain"].dir / "weights.pt"))
        return pruner.run(ctx, model, plan.keep, d, resume)

    def retrain(d: Path, resume: Path | None) -> dict[str, Any]:
        model = build()
        model.load_state_dict(load_tensors(stages["prune"].dir / "weights.pt"))
        masks = load_tensors(stages["prune"].dir / "masks.pt")
        return _retrain(ctx, cfg, plan.retrain_epochs, model, masks, d, resume)

    stages = {}
    for name, compute, stage_name in (("pretrain", dense, "pretrain"), ("prune", prune, pruner.name),
                                      ("retrain", retrain, "retrain")):
        stages[name] = cache.run(stage_name, settings[name], compute)
        state = "reused" if stages[name].cached else f"done in {stages[name].metrics['seconds']:.1f}s"
        log.info("stage %s: %s (%s)", stage_name, state, stages[name].dir)

    final_dir = stages["retrain"].dir
    sparsity = count_sparsity(load_tensors(final_dir / "weights.pt"), layers,
                              load_tensors(final_dir / "masks.pt"))
    m = {k: v for s in stages.values() for k, v in s.metrics.items()
         if k in ("dense_acc", "admm_acc", "pruned_acc", "final_acc")}
    summary = {
        "experiment": cfg.experiment_name,
        "data": cfg.data.name,
        "pruner": pruner.name,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "split_seed": cfg.data.split_seed,
        **m,
        "compression": sparsity["compression"],
        "target_compression": plan.target_compression,
        "keep": plan.keep,
        "pruning_epochs": plan.pruning_epochs,
        "retrain_epochs": plan.retrain_epochs,
        "budget_epochs": plan.budget_epochs,
        "total_weights": sparsity["total"],
        "nonzero_weights": sparsity["nonzero"],
        "per_layer": sparsity["per_layer"],
        "stage_seconds": {s.name: s.metrics["seconds"] for s in stages.values()},
        "stage_cached": {s.name: s.cached for s in stages.values()},
        "stage_dirs": {s.name: str(s.dir) for s in stages.values()},
        "admm": {k: stages["prune"].metrics.get(k)
                 for k in ("iterations_run", "converged", "steps_per_iteration")},
        "compute_seconds": sum(s.metrics["seconds"] for s in stages.values()),
        "wall_seconds": time.perf_counter() - start,  # this invocation: small when stages were reused
        "paper": _plain(cfg.get("paper")),
        "config": _plain(cfg),
    }
    out = Path(cfg.paths.results_dir) / cfg.results_subdir
    write_json(out / "summary.json", summary)
    write_table(out / "table.md", summary)
    cols, rows = table_rows(summary)
    log_summary(logger_factory, summary, rows, cols, save_dir=str(final_dir))
    log.info("compression %.2fx, dense %.4f -> final %.4f; wrote %s", summary["compression"],
             summary["dense_acc"], summary["final_acc"], out)
    return summary
