"""The run's summary: measured from the files the stages left, verified against them, then
written as summary.json and table.md and logged."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from admm_pruning.foundations.files import atomic_write, load_tensors, write_json
from admm_pruning.models.layers import prunable_layers
from admm_pruning.report.connectivity import connectivity
from admm_pruning.report.destination import task_overrides, variant_overrides
from admm_pruning.report.flops import flop_report
from admm_pruning.report.provenance import provenance
from admm_pruning.report.sparsity import count_sparsity, table_rows, write_table
from admm_pruning.report.storage import EXPORT_FILES, storage_report
from admm_pruning.report.verify import verify_export, verify_sparsity
from admm_pruning.store.stages import StageResult
from admm_pruning.training.context import StageContext
from admm_pruning.training.distributed import is_launch_rank_zero
from admm_pruning.training.loggers import LoggerFactory
from admm_pruning.wandb_runs import log_summary

log = logging.getLogger("admm_pruning")

# Stage metrics copied into the summary.
SCORES = ("dense_acc", "dense_val_acc", "admm_acc", "pruned_acc", "final_acc", "final_val_acc", "dense_top5",
          "final_top5")


def _device(cfg: DictConfig) -> str:
    """The device the stages trained on: a GPU where the trainer may pick one and one exists."""
    gpu = cfg.trainer.get("accelerator") in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "cuda" if gpu else "cpu"


def _trial(cfg: DictConfig) -> dict[str, Any] | None:
    """The tuning trial this run applied (conf/study_pruner/compare), or None."""
    applied = OmegaConf.select(cfg, "study.applied")
    return OmegaConf.to_container(applied) if applied is not None else None


def build_summary(cfg: DictConfig, ctx: StageContext, stages: dict[str, StageResult], plan: Any, pruner: Any,
                  final: nn.Module, start: float) -> dict[str, Any]:
    """Every figure from the stages' files and metrics; nothing from the config but labels."""
    final_dir = stages["retrain"].dir
    masks = load_tensors(final_dir / "masks.pt")
    weights, layers = load_tensors(final_dir / "weights.pt"), list(prunable_layers(final))
    sparsity = count_sparsity(weights, layers, masks)
    types = getattr(pruner, "sparsity", {}) or {}
    return {
        "experiment": cfg.experiment_name, "data": cfg.data.name, "pruner": pruner.name, "model": cfg.model.name,
        "seed": cfg.seed, "split_seed": cfg.data.split_seed, "variant": variant_overrides(cfg, task_overrides()),
        **{k: v for s in stages.values() for k, v in s.metrics.items() if k in SCORES},
        "compression": sparsity["compression"], "conv_compression": sparsity["conv_compression"],
        "sparsity": {n: types.get(n, "unstructured") for n in plan.keep},
        "flops": flop_report(final, next(iter(ctx.data.loader("test", 1)))[0].cpu()),
        "target_compression": plan.target_compression, "keep": plan.keep, "profile": plan.profile,
        "connectivity": connectivity(final, masks),
        "pruning_epochs": plan.pruning_epochs, "retrain_epochs": plan.retrain_epochs,
        "budget_epochs": plan.budget_epochs, "trial": _trial(cfg),
        "retrain_recipe": stages["retrain"].metrics.get("recipe"),
        "total_weights": sparsity["total"], "nonzero_weights": sparsity["nonzero"],
        "per_layer": sparsity["per_layer"],
        "storage": storage_report(weights, layers),
        "stage_seconds": {s.name: s.metrics["seconds"] for s in stages.values()},
        "stage_cached": {s.name: s.cached for s in stages.values()},
        "stage_dirs": {s.name: str(s.dir) for s in stages.values()},
        "admm": {k: stages["prune"].metrics.get(k) for k in ("iterations_run", "converged", "steps_per_iteration")},
        "compute_seconds": sum(s.metrics["seconds"] for s in stages.values()),
        "wall_seconds": time.perf_counter() - start,  # this invocation: small when stages were reused
        "provenance": provenance(_device(cfg)),
        "paper": OmegaConf.to_container(cfg.paper, resolve=True) if cfg.get("paper") else None,
        # the resolved config, less the tree of every paper figure (this run's are under "paper")
        "config": {k: v for k, v in OmegaConf.to_container(cfg, resolve=True).items() if k != "papers"},
    }


def publish(cfg: DictConfig, ctx: StageContext, stages: dict[str, StageResult], plan: Any, pruner: Any,
            final: nn.Module, logger_factory: LoggerFactory | None, start: float, out: Path) -> dict[str, Any]:
    """Verify the summary against the files on disk, export the shrunk model, then write it to
    ``out`` and log it."""
    summary = build_summary(cfg, ctx, stages, plan, pruner, final, start)
    if not is_launch_rank_zero():  # DDP: every rank ran the stages; rank 0 publishes
        return summary
    layers = list(prunable_layers(final))
    verify_sparsity(summary, stages["retrain"], stages["prune"].dir, layers)  # before anything is published
    summary["export_dir"] = str(Path(cfg.paths.artifacts_dir) / "exports" / stages["retrain"].dir.name)
    sample = next(iter(ctx.data.loader("test", 256)))[0].cpu()  # the data may live on a GPU, the model not
    pre = ctx.data.preprocessing() if hasattr(ctx.data, "preprocessing") else None
    summary["export"] = verify_export(final, sample, Path(summary["export_dir"]), preprocessing=pre)
    summary["preprocessing"] = pre
    summary["storage"]["export_files"] = {"bytes": summary["export"].get("files"), "holds": EXPORT_FILES}
    if summary["connectivity"]["disconnected"]:
        log.warning("disconnected network: some output classes receive no signal from the input (%s)",
                    summary["connectivity"]["per_layer"])
    if "scan_dir" in plan.profile:  # the sensitivity scan travels with the run's results
        for f in ("sensitivity.md", "sensitivity.png"):
            blob = (Path(plan.profile["scan_dir"]) / f).read_bytes()
            atomic_write(out / f, lambda p, b=blob: p.write_bytes(b))
    write_json(out / "summary.json", summary)
    write_table(out / "table.md", summary)
    cols, rows = table_rows(summary)
    log_summary(logger_factory, summary, rows, cols, save_dir=str(stages["retrain"].dir), identity=ctx.identity)
    log.info("compression %.2fx, dense %.4f -> final %.4f; stages took %.0f s (this run %.0f s); wrote %s",
             summary["compression"], summary["dense_acc"], summary["final_acc"], summary["compute_seconds"],
             summary["wall_seconds"], out)
    return summary
