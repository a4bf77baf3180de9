"""W&B run identity and stage artifacts.

Runs are named ``{pruner}-x{C}-s{seed}-{stage}`` and grouped per config point, so that the runs
of a sweep can be told apart and filtered; each computed stage logs its outputs as an artifact
named after its folder (``<stage>-<settings hash>``), with its parent stage's artifact as input,
so that W&B shows the lineage pretrain -> prune -> retrain. A W&B failure is logged, never raised.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from admm_pruning.sparsity.projections import keep_count
from admm_pruning.store.stages import StageResult, settings_hash
from admm_pruning.training.loggers import RunIdentity, close_logger

if TYPE_CHECKING:
    import wandb

    from admm_pruning.plan import Plan
    from admm_pruning.training.context import StageContext

log = logging.getLogger(__name__)

STAGE_FILES = ("weights.pt", "masks.pt", "settings.json")  # a stage's outputs, where present
NOT_CONFIG = ("papers", "hydra")  # every paper figure (this run's own are under `paper`); Hydra's settings
POINT_KEYS = ("pretrain", "pruner", "prune", "retrain", "budget")  # config sections that shape the numbers


def compact(x: float) -> str:
    """A compression for a run name: 71.2 -> '71.2', 71.157 -> '71.16', 20.0 -> '20'."""
    return f"{x:.2f}".rstrip("0").rstrip(".")


def planned_compression(plan: Plan, sizes: dict[str, int]) -> float:
    """The target compression, or where none was set, the one the plan's per-layer keep gives."""
    if plan.target_compression is not None:
        return float(plan.target_compression)
    kept = sum(keep_count(s, plan.keep[n]) if n in plan.keep else s for n, s in sizes.items())
    return sum(sizes.values()) / kept


def run_identity(cfg: DictConfig, pruner: str, plan: Plan, sizes: dict[str, int],
                 key: dict[str, Any]) -> RunIdentity:
    """Names, group, tags and config of one run's W&B runs. The group is the config point: the
    experiment, pruner and compression, and a hash of every other setting that shapes the numbers
    but the seed (``key``: network, data and numerics; the recipes and the pruner's settings)."""
    c = planned_compression(plan, sizes)
    point = {"key": key, "keep": plan.keep,
             **{k: OmegaConf.to_container(cfg[k], resolve=True) for k in POINT_KEYS if k in cfg}}
    group = f"{cfg.experiment_name}-{pruner}-x{compact(c)}-{settings_hash(point)[:8]}"
    tags = [pruner, str(cfg.data.name), f"seed={cfg.seed}"]
    rho = cfg.pruner.get("rho")
    if isinstance(rho, (int, float)):
        tags.append(f"rho={rho:g}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    config = {k: v for k, v in resolved.items() if k not in NOT_CONFIG}
    config["plan"] = {"compression": c, "keep": dict(plan.keep)}  # filterable where prune.compression is null
    return RunIdentity(f"{pruner}-x{compact(c)}-s{cfg.seed}", group, tags, config)


def stage_artifact(stage_dir: Path) -> wandb.Artifact:
    """A stage's outputs as a model artifact named after its folder. Files are referenced, not
    copied (the stage cache never rewrites a finished stage): the same files give the same
    digest, so a parent rebuilt from a reused stage is the version its own run logged."""
    import wandb

    artifact = wandb.Artifact(stage_dir.name, type="model", metadata={"stage": stage_dir.name.rsplit("-", 1)[0]})
    for name in STAGE_FILES:
        if (stage_dir / name).is_file():
            artifact.add_file(str((stage_dir / name).resolve()), name=name, policy="immutable")
    return artifact


def use_stage(run: wandb.Run, stage_dir: Path) -> None:
    """Record a stage's artifact as an input of ``run``. Offline, W&B refuses ``use_artifact``; the
    record it would write for a local artifact (logged, then used once committed) is written
    instead, and ``wandb sync`` replays it."""
    artifact = stage_artifact(stage_dir)
    if run.offline:
        run._log_artifact(artifact, is_user_created=True, use_after_commit=True)
    else:
        run.use_artifact(artifact)


def finish_stage(ctx: StageContext, done: StageResult | None, parent: StageResult | None) -> None:
    """End a stage's W&B run; for a computed stage (``done``), first log its parent's artifact as
    input and its own as output, from the stage's last training run, or from a run of its own
    where it trained nothing. A reused stage logs nothing: the next stage still references it."""
    logger, ctx.stage_logger = ctx.stage_logger, None
    try:
        if done is None or done.cached or ctx.logger_factory is None:
            return
        if logger is None:
            names = ctx.run_identity.for_stage(done.name)
            logger = ctx.logger_factory(stage=done.name, save_dir=str(done.dir), **names)
        import wandb

        run = logger.experiment if isinstance(logger, WandbLogger) else None
        if isinstance(run, wandb.Run):  # not the CSV fallback, nor a DDP rank > 0
            if parent is not None:
                use_stage(run, parent.dir)
            run.log_artifact(stage_artifact(done.dir))
    except Exception as exc:  # noqa: BLE001 - a W&B failure must never fail the run
        log.warning("W&B: could not log the artifacts of stage %s (%s)", done and done.dir, exc)
    finally:
        close_logger(logger)
