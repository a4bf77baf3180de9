"""W&B run identity and stage artifacts.

Runs are named ``{pruner}-x{C}-s{seed}-{stage}`` and grouped per experiment, so that an experiment's
runs sit together; the config point (experiment, pruner, compression and a hash of every other
setting but the seed) is each run's ``point`` config key and tag. Each computed stage logs its
outputs as an artifact named after its folder (``<stage>-<settings hash>``), with its parent
stage's artifact as input, so that W&B shows the lineage pretrain -> prune -> retrain; the summary
run uses the retrain stage's artifact, logs the exported model as one, and adds its point to the
experiment's accuracy-vs-compression table. A W&B failure is logged, never raised.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import WandbLogger

from admm_pruning.foundations.desc import settings_hash
from admm_pruning.pruners.base import keyed_node
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.store.stages import StageResult
from admm_pruning.training.loggers import LoggerFactory, RunIdentity, close_logger

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
    """Names, group, tags and config of one run's W&B runs. The group is the experiment; the config
    point, in the config (``point``) and the tags, is the experiment, pruner and compression and a
    hash of every other setting that shapes the numbers but the seed (``key``: network, data and
    numerics; the recipes and the pruner's settings): the seeds of a point share it."""
    c = planned_compression(plan, sizes)
    point = {"key": key, "keep": plan.keep,
             **{k: OmegaConf.to_container(cfg[k], resolve=True) for k in POINT_KEYS if k in cfg},
             "pruner": keyed_node(cfg.pruner)}
    point_name = f"{cfg.experiment_name}-{pruner}-x{compact(c)}-{settings_hash(point)[:8]}"
    tags = [pruner, str(cfg.data.name), f"seed={cfg.seed}", f"point={point_name}"]
    rho = cfg.pruner.get("rho")
    if isinstance(rho, (int, float)):
        tags.append(f"rho={rho:g}")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(resolved, dict)
    config = {k: v for k, v in resolved.items() if k not in NOT_CONFIG}
    config["plan"] = {"compression": c, "keep": dict(plan.keep)}  # filterable where prune.compression is null
    config["point"] = point_name
    return RunIdentity(f"{pruner}-x{compact(c)}-s{cfg.seed}", str(cfg.experiment_name), tags, config)


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


def export_artifact(export_dir: Path) -> wandb.Artifact:
    """The exported model (safetensors + architecture, ONNX, the suite's shrunk form) as a model
    artifact, its files referenced."""
    import wandb

    artifact = wandb.Artifact(f"export-{export_dir.name}", type="model", metadata={"stage": "export"})
    for path in sorted(p for p in export_dir.iterdir() if p.is_file()):
        artifact.add_file(str(path.resolve()), name=path.name, policy="immutable")
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


POINT_COLUMNS = ["experiment", "data", "pruner", "seed", "compression", "final_acc", "dense_acc", "change_pts"]


def log_summary(factory: LoggerFactory | None, summary: dict[str, Any], rows: list[list[Any]],
                columns: list[str], save_dir: str, identity: RunIdentity | None = None) -> None:
    """A W&B run of job_type 'summary', named and grouped like the run's stages: flat summary keys,
    the per-layer table, the run's point in the experiment's ``accuracy_vs_compression`` table (W&B
    merges a key's tables across the runs of a panel, so the chart grows as runs land), the retrain
    stage's artifact as input and the exported model as output."""
    if factory is None:
        return
    identity = identity or RunIdentity(summary["experiment"], summary["experiment"], [summary["pruner"]])
    logger = factory(stage="summary", save_dir=save_dir, **identity.for_stage("summary"))
    if not isinstance(logger, WandbLogger):
        return
    try:
        import wandb

        run = logger.experiment
        flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str, bool))}
        run.summary.update(flat)
        point = [summary["experiment"], summary["data"], summary["pruner"], summary["seed"], summary["compression"],
                 summary["final_acc"], summary["dense_acc"], 100 * (summary["final_acc"] - summary["dense_acc"])]
        run.log({"per_layer": wandb.Table(columns=columns, data=rows),
                 "accuracy_vs_compression": wandb.Table(columns=POINT_COLUMNS, data=[point])})
        retrain = (summary.get("stage_dirs") or {}).get("retrain")
        if retrain and Path(retrain).is_dir():
            use_stage(run, Path(retrain))
        export = summary.get("export_dir")
        if export and Path(export).is_dir() and any(Path(export).iterdir()):
            run.log_artifact(export_artifact(Path(export)))
    except Exception as exc:  # noqa: BLE001
        log.warning("W&B summary logging failed: %s", exc)
    finally:
        close_logger(logger)
