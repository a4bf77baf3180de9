"""Pretrain -> prune (the pruner's stage) -> masked retrain, each a cached stage; then the results.

The pipeline owns everything around a pruner: it checks the config, plans targets and budget,
runs and caches the stages, persists the pruner's masks and publishes the verified summary.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from admm_pruning.config import validate
from admm_pruning.foundations.desc import Desc
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.foundations.files import load_tensors, save_tensors
from admm_pruning.models.layers import prunable_layers
from admm_pruning.models.pretrained import file_sha256, load_dense_checkpoint
from admm_pruning.plan import Plan, initial_plan, profiled_plan
from admm_pruning.pruners.base import PruneJob, Pruner, build_pruner, keyed_node
from admm_pruning.report.destination import check_writable, results_path
from admm_pruning.report.provenance import note_code_version
from admm_pruning.report.summary import publish
from admm_pruning.sparsity.masks import apply_masks, plain_state_dict, remove_masks
from admm_pruning.sparsity.structured import SparsityError, check_sparsity
from admm_pruning.store.descriptions import PretrainDesc, PruneDesc, RetrainDesc
from admm_pruning.store.stages import StageCache, StageResult
from admm_pruning.training.context import StageContext
from admm_pruning.training.fast import FastPath
from admm_pruning.training.recipe import Recipe, train
from admm_pruning.tuning.trials import apply_trial
from admm_pruning.wandb_runs import finish_stage, run_identity

log = logging.getLogger("admm_pruning")

# Trainer settings that change the numbers a stage produces.
NUMERICS = ("precision", "deterministic", "accelerator", "accumulate_grad_batches", "gradient_clip_val")


def plain(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else node


# Where the files are and how they are fetched or checked: not what they hold. Unchecked data
# (verify_md5 false: generated test data) does key its stages, so it never shares a cache with MNIST.
MACHINE_DATA_KEYS = ("data_dir", "download", "verify_md5")


def context_key(cfg: DictConfig) -> dict[str, Any]:
    """What shapes every stage besides its own settings: the network, the data and its split,
    and the trainer's numerics. Part of every cached artifact's key, sub-stages included."""
    data = {k: v for k, v in plain(cfg.data).items() if k not in MACHINE_DATA_KEYS}
    if cfg.data.get("verify_md5") is False:
        data["verify_md5"] = False
    return {"model": plain(cfg.model), "data": data, "numerics": {k: cfg.trainer.get(k) for k in NUMERICS}}


def _dense_settings(cfg: DictConfig) -> dict[str, Any]:
    """A loaded checkpoint is keyed by its content (a new file at the same path is a new stage);
    the training recipe then plays no part."""
    checkpoint = cfg.pretrain.get("checkpoint")
    return {"checkpoint_sha256": file_sha256(checkpoint)} if checkpoint else plain(cfg.pretrain)


def _scores(ctx: StageContext, model: nn.Module, prefix: str) -> dict[str, Any]:
    """{prefix}_acc (test top-1), {prefix}_top5 with >= 5 classes, and {prefix}_val_acc (the
    split operating points are chosen on; None without one)."""
    scores = ctx.scores(model)
    out = {f"{prefix}_acc": scores["acc"]}
    if "acc_top5" in scores:
        out[f"{prefix}_top5"] = scores["acc_top5"]
    out[f"{prefix}_val_acc"] = ctx.evaluate(model, "val") if len(ctx.data.setup().val) else None
    return out


def check(cfg: DictConfig, build: Callable[[], nn.Module]) -> tuple[Pruner, Path]:
    """Everything that can be refused before any data is read or folder written; returns the
    pruner and the folder the results will go to."""
    validate(cfg, build)
    out = results_path(cfg)
    check_writable("paths.results_dir", cfg.paths.results_dir, out)
    check_writable("paths.artifacts_dir", cfg.paths.artifacts_dir, Path(cfg.paths.artifacts_dir))
    pruner = build_pruner(cfg.pruner)
    if cfg.pretrain.get("checkpoint"):  # a missing or mismatched file fails here
        load_dense_checkpoint(build(), cfg.pretrain.checkpoint)
    try:
        check_sparsity(prunable_layers(build()), cfg.prune.keep, getattr(pruner, "sparsity", None))
    except SparsityError as exc:
        raise ConfigError(str(exc)) from exc
    return pruner, out


def flush_denormals(cfg: DictConfig) -> None:
    """Treat floats below 1.2e-38 as zero on the CPU (``flush_denormal``, default true), as
    TensorFlow's CPU kernels do. ADMM drives pruned weights and Adam's moments into that range, and
    x86 CPUs compute on such floats at a fraction of their speed: without it, LeNet-5's ADMM epochs
    on full MNIST ran several times slower on an Intel Xeon. Not part of any stage key: like the
    choice of CPU kernels, it moves results only in their last bits, at magnitudes below 1e-38."""
    torch.set_flush_denormal(bool(cfg.get("flush_denormal", True)))


def run_experiment(cfg: DictConfig) -> dict[str, Any]:
    """Run (or reuse) every stage and write summary.json and table.md; returns the summary."""
    start = time.perf_counter()
    note_code_version()
    flush_denormals(cfg)

    def build() -> nn.Module:
        """A fresh model, initialised from the run's seed (same init in every process)."""
        torch.manual_seed(cfg.seed)
        return instantiate(cfg.model.net)

    apply_trial(cfg)  # a tuning trial's overrides, before anything is checked
    pruner, out = check(cfg, build)
    sizes = {n: m.weight.numel() for n, m in prunable_layers(build()).items()}
    data = instantiate(cfg.data).setup()  # fails here, before any folder is written
    logger_factory = instantiate(cfg.logger) if cfg.get("logger") else None
    ctx = StageContext(data=data, trainer_kwargs=plain(cfg.trainer), seed=cfg.seed, experiment=cfg.experiment_name,
                       logger_factory=logger_factory, fast=FastPath(**plain(cfg.get("fast") or {})))
    plan = initial_plan(cfg, pruner, sizes, ctx.steps_per_epoch)
    ctx.identity = run_identity(cfg, pruner.name, plan, sizes, context_key(cfg))
    cache = StageCache(Path(cfg.paths.artifacts_dir) / "stages")
    stages = Stages(cfg, ctx, cache, build)
    dense = stages.pretrain()
    if plan.profile["profile"] != "preset":  # phase 2: targets from the dense model
        plan = profiled_plan(cfg, plan, pruner, ctx, stages.load(dense), sizes, cache, stages.dense)
    pruned = stages.prune(pruner, plan, dense)
    final = stages.retrain(pruner, plan, pruned)
    return publish(cfg, ctx, {"pretrain": dense, "prune": pruned, "retrain": final}, plan, pruner,
                   stages.load(final), logger_factory, start, out)


class Stages:
    """The three cached stages of one run, each keyed by everything that shaped it."""

    def __init__(self, cfg: DictConfig, ctx: StageContext, cache: StageCache, build: Callable[[], nn.Module]) -> None:
        self.cfg, self.ctx, self.cache, self.build = cfg, ctx, cache, build
        self.key = context_key(cfg)
        self.dense = PretrainDesc(**self.key, seed=cfg.seed, pretrain=_dense_settings(cfg))
        self.pruned: PruneDesc | None = None

    def load(self, stage: StageResult) -> nn.Module:
        """A fresh model with a stage's saved weights (masked weights are zero, no masks attached)."""
        model = self.build()
        model.load_state_dict(load_tensors(stage.dir / "weights.pt"))
        return model

    def _run(self, desc: Desc, compute: Callable[[Path, Path | None], dict],
             parent: StageResult | None = None) -> StageResult:
        """Run or reuse a stage; its W&B run ends here, with the stage's artifact (``parent``'s as input)."""
        done = None
        try:
            done = self.cache.run(desc, compute)
        finally:
            finish_stage(self.ctx, done, parent)
        state = "reused" if done.cached else f"done in {done.metrics['seconds']:.1f}s"
        log.info("stage %s: %s (%s)", desc.name, state, done.dir)
        return done

    def pretrain(self) -> StageResult:
        def compute(d: Path, resume: Path | None) -> dict[str, Any]:
            model = self.build()
            if self.cfg.pretrain.get("checkpoint"):
                load_dense_checkpoint(model, self.cfg.pretrain.checkpoint)
            else:
                train(self.ctx, model, Recipe.from_cfg(self.cfg.pretrain), "pretrain", d, resume)
            save_tensors(d / "weights.pt", plain_state_dict(model))
            return _scores(self.ctx, model, "dense")

        return self._run(self.dense, compute)

    def prune(self, pruner: Pruner, plan: Plan, dense: StageResult) -> StageResult:
        """The pruner's stage: it computes masks; the masked weights and masks are saved here."""
        desc = self.pruned = PruneDesc(self.dense, keyed_node(self.cfg.pruner), plan.keep, pruner.name)

        def compute(d: Path, resume: Path | None) -> dict[str, Any]:
            model = self.load(dense)
            job = PruneJob(self.ctx, model, plan.keep, StageCache(d / "rounds"), self.key, d, resume, self.cache)
            result = pruner.prune(job)
            remove_masks(model)
            apply_masks(model, result.masks)
            save_tensors(d / "weights.pt", plain_state_dict(model))
            save_tensors(d / "masks.pt", result.masks)
            return {**result.metrics, "pruned_acc": self.ctx.evaluate(model)}

        return self._run(desc, compute, parent=dense)

    def retrain(self, pruner: Pruner, plan: Plan, pruned: StageResult) -> StageResult:
        """Masked retraining, by the shared recipe or the pruner's own (Han et al.)."""
        masks = load_tensors(pruned.dir / "masks.pt")
        shared = Recipe.from_cfg(self.cfg.retrain, epochs=plan.retrain_epochs)
        shared = shared.with_dropout_scaled(masks, self.cfg.retrain.get("dropout_scaled_by"))
        recipe = pruner.retrain_recipe(shared, masks)
        assert self.pruned is not None, "retrain follows prune"
        desc = RetrainDesc(self.pruned, recipe.settings())

        def compute(d: Path, resume: Path | None) -> dict[str, Any]:
            model = self.load(pruned)
            apply_masks(model, masks)
            train(self.ctx, model, recipe, "retrain", d, resume)
            save_tensors(d / "weights.pt", plain_state_dict(model))
            save_tensors(d / "masks.pt", masks)
            return {**_scores(self.ctx, model, "final"), "recipe": recipe.settings()}

        return self._run(desc, compute, parent=pruned)

