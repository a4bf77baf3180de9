"""ADMM weight pruning (Zhang et al. 2018) and its baselines, reproducibly.

For your own model: ``ADMMPruning`` (a Lightning callback) and ``ADMM`` (a plain PyTorch loop),
with ``ADMMSchedule`` and ``apply_masks`` (docs/library.md). They are imported on first use, so
that the command line starts without loading torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"
__all__ = ["ADMM", "ADMMPruning", "ADMMSchedule", "apply_masks", "__version__"]

_WHERE = {"ADMM": "admm_pruning.api", "ADMMPruning": "admm_pruning.callback",
          "ADMMSchedule": "admm_pruning.sparsity.admm", "apply_masks": "admm_pruning.sparsity.masks"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'admm_pruning' has no attribute {name!r}")
