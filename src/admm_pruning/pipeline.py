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

from .config import ConfigError, Plan, resolve, validate
from .connectivity import connectivity
from .distributed import is_launch_rank_zero
from .flops import flop_report
from .loggers import log_summary
from .masks import apply_masks, plain_state_dict
from .models import prunable_layers, set_dropout
from .modules import ClassifierModule
from .pretrained import file_sha256, load_dense_checkpoint
from .results import count_sparsity, table_rows, write_table
from .sensitivity import derive_keep
from .stages import StageCache, atomic_write, load_tensors, save_tensors, write_json
from .structured import SparsityError, check_sparsity
from .training import StageContext
from .verify import verify_export, verify_sparsity

log = logging.getLogger("admm_pruning")


def _plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


def stage_settings(cfg: DictConfig, plan: Plan) -> dict[str, dict[str, Any]]:
    """What shapes each stage; a stage's folder hash covers its parent's settings too."""
    data = {k: v for k, v in _plain(cfg.data).items() if k not in ("data_dir", "download")}
    numerics = {k: cfg.trainer.get(k) for k in ("precision", "deterministic")}
    pretrain = {"model": _plain(cfg.model), "data": data, "seed": cfg.seed,
                "pretrain": _dense_settings(cfg), "numerics": numerics}
    prune = {"parent": pretrain, "pruner": _plain(cfg.pruner), "keep": plan.keep}
    retrain = {"parent": prune, "retrain": {**_plain(cfg.retrain), "epochs": plan.retrain_epochs}}
    return {"pretrain": pretrain, "prune": prune, "retrain": retrain}


def _dense_settings(cfg: DictConfig) -> dict[str, Any]:
    """A loaded checkpoint is keyed by its content (a new file at the same path is a new stage);
    the training recipe then plays no part."""
    checkpoint = cfg.pretrain.get("checkpoint")
    return {"checkpoint_sha256": file_sha256(checkpoint)} if checkpoint else _plain(cfg.pretrain)


def _scores(prefix: str, scores: dict[str, float]) -> dict[str, float]:
    """{prefix}_acc (top-1) and, where the data have >= 5 classes, {prefix}_top5."""
    out = {f"{prefix}_acc": scores["acc"]}
    if "acc_top5" in scores:
        out[f"{prefix}_top5"] = scores["acc_top5"]
    return out


def _train_dense(ctx: StageContext, cfg: DictConfig, model: nn.Module, d: Path,
                 resume: Path | None) -> dict[str, Any]:
    if cfg.pretrain.get("checkpoint"):
        load_dense_checkpoint(model, cfg.pretrain.checkpoint)
    else:
        set_dropout(model, cfg.pretrain.dropout)
        module = ClassifierModule(model, instantiate(cfg.pretrain.optimizer), l2=cfg.pretrain.l2,
                                  stage="pretrain", lr_scheduler=instantiate(cfg.pretrain.get("lr_scheduler")))
        ctx.fit(module, "pretrain", d, resume, cfg.pretrain.batch_size, max_epochs=cfg.pretrain.epochs)
    save_tensors(d / "weights.pt", plain_state_dict(model))
    return _scores("dense", ctx.scores(model))


def _retrain(ctx: StageContext, cfg: DictConfig, epochs: int, model: nn.Module,
             masks: dict[str, torch.Tensor], d: Path, resume: Path | None) -> dict[str, Any]:
    apply_masks(model, masks)
    set_dropout(model, cfg.retrain.dropout)
    module = ClassifierModule(model, instantiate(cfg.retrain.optimizer), l2=cfg.retrain.l2,
                              stage="retrain", lr_scheduler=instantiate(cfg.retrain.get("lr_scheduler")))
    ctx.fit(module, "retrain", d, resume, cfg.retrain.batch_size, max_epochs=epochs)
    save_tensors(d / "weights.pt", plain_state_dict(model))
    save_tensors(d / "masks.pt", masks)
    return _scores("final", ctx.scores(model))


def run_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Run (or reuse) every stage and write summary.json and table.md; returns the summary."""
    start = time.perf_counter()

    def build() -> nn.Module:
        """A fresh model, initialised from the run's seed (same init in every process)."""
        torch.manual_seed(cfg.seed)
        return instantiate(cfg.model.net)

    validate(cfg, build())
    if cfg.pretrain.get("checkpoint"):  # a missing or mismatched file fails here, before any data
        load_dense_checkpoint(build(), cfg.pretrain.checkpoint)
    sparsity_types = _plain(cfg.pruner.get("sparsity")) or {}
    try:
        check_sparsity(prunable_layers(build()), cfg.prune.keep, sparsity_types)
    except SparsityError as exc:
        raise ConfigError(str(exc)) from exc
    data = instantiate(cfg.data).setup()  # fails here, before any folder is written
    pruner = instantiate(cfg.pruner)
    sizes = {n: m.weight.numel() for n, m in prunable_layers(build()).items()}
    plan = resolve(cfg, build(), lambda keep: pruner.pruning_epochs(data, keep=keep, sizes=sizes))
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
    profile: dict[str, Any] = {"profile": cfg.prune.get("profile", "preset")}
    for name, compute, stage_name in (("pretrain", dense, "pretrain"), ("prune", prune, pruner.name),
                                      ("retrain", retrain, "retrain")):
        if name == "prune" and profile["profile"] != "preset":  # targets from the dense model itself
            model = build()
            model.load_state_dict(load_tensors(stages["pretrain"].dir / "weights.pt"))
            plan.keep, profile = derive_keep(profile["profile"], ctx, model, list(plan.keep),
                                             float(cfg.prune.compression), list(cfg.prune.sensitivity_levels),
                                             cache, settings["pretrain"])
            settings = stage_settings(cfg, plan)
        stages[name] = cache.run(stage_name, settings[name], compute)
        state = "reused" if stages[name].cached else f"done in {stages[name].metrics['seconds']:.1f}s"
        log.info("stage %s: %s (%s)", stage_name, state, stages[name].dir)

    final_dir = stages["retrain"].dir
    sparsity = count_sparsity(load_tensors(final_dir / "weights.pt"), layers,
                              load_tensors(final_dir / "masks.pt"))
    final = build()
    final.load_state_dict(load_tensors(final_dir / "weights.pt"))
    m = {k: v for s in stages.values() for k, v in s.metrics.items()
         if k in ("dense_acc", "admm_acc", "pruned_acc", "final_acc", "dense_top5", "final_top5")}
    summary = {
        "experiment": cfg.experiment_name,
        "data": cfg.data.name,
        "pruner": pruner.name,
        "model": cfg.model.name,
        "seed": cfg.seed,
        "split_seed": cfg.data.split_seed,
        **m,
        "compression": sparsity["compression"],
        "conv_compression": sparsity["conv_compression"],
        "sparsity": {n: sparsity_types.get(n, "unstructured") for n in plan.keep},
        "flops": flop_report(final, next(iter(data.loader("test", 1)))[0]),
        "target_compression": plan.target_compression,
        "keep": plan.keep,
        "profile": profile,
        "connectivity": connectivity(final, load_tensors(final_dir / "masks.pt")),
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
    if not is_launch_rank_zero():  # DDP: every rank ran the stages; rank 0 publishes
        return summary
    verify_sparsity(summary, stages["retrain"], stages["prune"].dir, layers)  # before anything is published
    summary["export_dir"] = str(Path(cfg.paths.artifacts_dir) / "exports" / final_dir.name)
    summary["export"] = verify_export(final, next(iter(data.loader("test", 256)))[0], Path(summary["export_dir"]))
    out = Path(cfg.paths.results_dir) / cfg.results_subdir
    if summary["connectivity"]["disconnected"]:
        log.warning("disconnected network: some output classes receive no signal from the input (%s)",
                    summary["connectivity"]["per_layer"])
    if "scan_dir" in profile:  # the sensitivity scan travels with the run's results
        for f in ("sensitivity.md", "sensitivity.png"):
            blob = (Path(profile["scan_dir"]) / f).read_bytes()
            atomic_write(out / f, lambda p, b=blob: p.write_bytes(b))
    write_json(out / "summary.json", summary)
    write_table(out / "table.md", summary)
    cols, rows = table_rows(summary)
    log_summary(logger_factory, summary, rows, cols, save_dir=str(final_dir))
    log.info("compression %.2fx, dense %.4f -> final %.4f; wrote %s", summary["compression"],
             summary["dense_acc"], summary["final_acc"], out)
    return summary
