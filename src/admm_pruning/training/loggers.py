"""Experiment loggers. W&B is offline unless the user has set W&B up, and a W&B failure
falls back to CSV with a warning: a run never fails because W&B has no network, and after one
failure the process stops trying, so an unreachable server costs one ``init_timeout``, not one
per stage."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import CSVLogger, Logger, WandbLogger

log = logging.getLogger(__name__)
LoggerFactory = Callable[..., Logger]

# (mode, WANDB_BASE_URL) -> the error of W&B's first failure to start in this process.
_FAILED: dict[tuple[str, str | None], str] = {}


@dataclass
class RunIdentity:
    """How the W&B runs of one run are named and filed, so that the runs of a sweep can be told
    apart and filtered: ``{prefix}-{stage}`` names, one ``group`` per config point (its seeds
    together), tags, and the resolved config on every run."""

    prefix: str
    group: str
    tags: list[str]
    config: dict[str, Any] = field(default_factory=dict)

    def for_stage(self, stage: str) -> dict[str, Any]:
        """The logger factory's naming arguments for one stage's run (job_type = ``stage``)."""
        return {"group": self.group, "name": f"{self.prefix}-{stage}", "tags": self.tags, "config": self.config}


def wandb_mode(mode: str = "auto") -> str:
    """'auto' means online only if W&B credentials exist; WANDB_MODE always wins."""
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    if mode != "auto":
        return mode
    netrc = Path.home() / ".netrc"
    has_login = netrc.is_file() and "api.wandb.ai" in netrc.read_text(errors="ignore")
    return "online" if os.environ.get("WANDB_API_KEY") or has_login else "offline"


def wandb_logger(
    *, stage: str, group: str, name: str, tags: list[str], save_dir: str,
    config: dict[str, Any] | None = None, project: str = "admm-pruning", entity: str | None = None,
    mode: str = "auto", root_dir: str | None = None, init_timeout: float = 15.0, run_id: str | None = None,
) -> Logger:
    """A W&B run for one stage (``run_id``: the stage's own, so that a resumed stage continues its run),
    or CSV where W&B is disabled or cannot start."""
    resolved = wandb_mode(mode)
    key = (resolved, os.environ.get("WANDB_BASE_URL"))
    if resolved == "disabled":
        return csv_logger(stage=stage, group=group, name=name, tags=tags, save_dir=save_dir)
    if key in _FAILED:
        log.info("W&B failed earlier in this process (%s); logging to CSV in %s", _FAILED[key], save_dir)
        return csv_logger(stage=stage, group=group, name=name, tags=tags, save_dir=save_dir)
    try:
        import wandb

        root = root_dir or save_dir
        Path(root).mkdir(parents=True, exist_ok=True)
        logger = WandbLogger(
            project=project, entity=entity, name=name, group=group, job_type=stage,
            tags=tags, config=config, save_dir=root, mode=resolved, reinit="create_new", id=run_id,
            settings=wandb.Settings(init_timeout=init_timeout, silent=True))
        logger._wandb_init.pop("anonymous", None)  # Lightning always passes it; W&B warns that it does nothing
        _ = logger.experiment  # start now, so that a failure falls back before training
        return logger
    except Exception as exc:  # noqa: BLE001 - any W&B failure must not stop the run
        _FAILED[key] = str(exc)[:200]
        log.warning("W&B unavailable (%s); logging to CSV in %s instead, and for the rest of this process",
                    exc, save_dir)
        return csv_logger(stage=stage, group=group, name=name, tags=tags, save_dir=save_dir)


def csv_logger(*, stage: str, group: str, name: str, tags: list[str], save_dir: str,
               config: dict[str, Any] | None = None, run_id: str | None = None) -> Logger:
    """logs/<stage>/metrics.csv; a resumed stage's earlier file is kept as metrics-<n>.csv
    (Lightning would delete it). Naming and ``config`` are W&B's: summary.json holds the config."""
    log_dir = Path(save_dir) / "logs" / stage
    if (log_dir / "metrics.csv").is_file():
        n = len(list(log_dir.glob("metrics-*.csv")))
        (log_dir / "metrics.csv").rename(log_dir / f"metrics-{n}.csv")
    return CSVLogger(save_dir=save_dir, name="logs", version=stage)


def close_logger(logger: Any) -> None:
    if isinstance(logger, WandbLogger):
        try:
            logger.experiment.finish()
        except Exception as exc:  # noqa: BLE001
            log.warning("W&B finish failed: %s", exc)
