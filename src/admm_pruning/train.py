"""Entry point: ``admm-prune experiment=lenet5_admm_71x data=mnist10k`` (Hydra overrides)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from .config import ConfigError
from .data import DataError
from .pipeline import run_experiment

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    logging.getLogger("admm_pruning").setLevel(logging.INFO)
    try:
        summary = run_experiment(cfg)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    return summary["final_acc"]


if __name__ == "__main__":
    main()
