"""Entry point: ``admm-prune experiment=lenet5_admm_71x data=mnist10k`` (Hydra overrides).

Exit status: 1 for Hydra's own errors (an unknown experiment, model, data or pruner), 2 for bad
input (configuration or data), 3 for a run that went wrong (non-finite loss, pruned weights that
moved during masked training, or saved weights that do not back the claimed sparsity). Our errors
are one ``error:`` line naming the key, file or stage, and no summary is written.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    # Imported here rather than at the top, so that Hydra's own errors and --help come back in
    # about a second instead of after importing torch and Lightning.
    from admm_pruning.foundations.errors import ConfigError, DataError
    from admm_pruning.pipeline import run_experiment
    from admm_pruning.report.sparsity import SparsityMismatchError
    from admm_pruning.sparsity.masks import RevivedWeightsError
    from admm_pruning.training.guards import NonFiniteLossError

    logging.getLogger("admm_pruning").setLevel(logging.INFO)
    try:
        summary = run_experiment(cfg)
    except (ConfigError, DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (NonFiniteLossError, SparsityMismatchError, RevivedWeightsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(3)
    return summary["final_acc"]


if __name__ == "__main__":
    main()
