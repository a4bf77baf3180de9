"""The pruner contract (ShrinkBench style): a pruner only computes masks; the pipeline persists
them, evaluates, retrains and measures.

A pruner gets a ``PruneJob`` (the dense model, the data through the stage context, the resolved
per-layer targets and a cache for sub-stages of its own) and returns a ``PruneResult`` (masks and
metrics). It may also set its own final retraining (Han et al. retrain at 1/10 of the lr).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from admm_pruning.foundations.errors import ConfigError
from admm_pruning.store.stages import StageCache
from admm_pruning.training.context import StageContext
from admm_pruning.training.recipe import Recipe

# Keys of a pruner node that are not constructor options.
META_KEYS = ("_target_", "name")

# Where a pruner class lived when its stages were first keyed. A stage key holds the pruner node,
# ``_target_`` included, so a class moved to a file of its own is keyed by its first path: its
# cached stages, and the runs published from them, stay valid (tests/test_configs.py pins them).
KEYED_AS = {f"admm_pruning.pruners.{module}.{cls}": f"admm_pruning.pruners.magnitude.{cls}" for module, cls in (
    ("oneshot", "OneShotPruner"), ("random", "RandomPruner"), ("global_magnitude", "GlobalMagnitudePruner"),
    ("iterative_magnitude", "IterativeMagnitudePruner"))}


def keyed_node(node: DictConfig) -> dict[str, Any]:
    """The resolved pruner node as it keys stages and W&B points (see ``KEYED_AS``)."""
    plain = OmegaConf.to_container(node, resolve=True)
    assert isinstance(plain, dict)
    target = plain.get("_target_")
    return {**plain, "_target_": KEYED_AS.get(target, target)} if "_target_" in plain else plain


@dataclass
class PruneJob:
    """What a pruner works with.

    ``cache`` is a sub-cache inside the pruner's own stage folder ``dir`` (whose name hashes
    everything that shaped the stage). ``shared`` is the cache every run shares, for sub-stages
    that other runs may reuse (progressive ADMM's rounds, shared by presets with a common start):
    a sub-stage cached there must hold ``key`` in its settings (model, data split, seed, trainer
    numerics), so nothing trained on other data or another split is ever reused.
    """

    ctx: StageContext
    model: nn.Module
    keep: dict[str, float]
    cache: StageCache
    key: dict[str, Any]
    dir: Path
    resume: Path | None
    shared: StageCache | None = None


@dataclass
class PruneResult:
    """Masks by layer name (True = kept), and what the pruner wants recorded."""

    masks: dict[str, torch.Tensor]
    metrics: dict[str, Any] = field(default_factory=dict)


class Pruner:
    """Base class. Subclasses set ``name`` and implement ``prune``; their constructor keywords are
    the options their config may set, and nothing else."""

    name: ClassVar[str]

    @classmethod
    def options(cls) -> tuple[str, ...]:
        """The config keys this pruner accepts (its constructor's keywords)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return tuple(p.name for p in params
                     if p.name != "self" and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))

    def pruning_epochs(self, steps_per_epoch: Callable[[int], int], keep: dict[str, float],
                       sizes: dict[str, int]) -> float:
        """Epochs the pruner trains before the shared retraining (its share of the budget)."""
        return 0.0

    def prune(self, job: PruneJob) -> PruneResult:
        raise NotImplementedError

    def retrain_recipe(self, shared: Recipe, masks: dict[str, torch.Tensor]) -> Recipe:
        """The final masked retraining; the shared recipe unless the method defines its own."""
        return shared


def pruner_class(node: DictConfig) -> type[Pruner]:
    """The class ``cfg.pruner._target_`` names; one that cannot be imported is a config error."""
    target = node.get("_target_")
    try:
        return get_class(target)
    except Exception as exc:  # noqa: BLE001 - any import failure is a bad _target_
        raise ConfigError(f"pruner._target_={target!r}: cannot be imported ({exc})") from exc


def build_pruner(node: DictConfig) -> Pruner:
    """Instantiate ``cfg.pruner``, refusing any key the pruner does not take, by name."""
    cls = pruner_class(node)
    options = cls.options()
    for key in node:
        if key in META_KEYS or key in options:
            continue
        value = OmegaConf.to_container(node, resolve=True)[key]
        what = "structured sparsity" if key == "sparsity" else f"an option {key!r}"
        raise ConfigError(f"pruner.{key}={value}: pruner {node.get('name', cls.name)} does not support {what}; "
                          f"its options are {', '.join(options) or 'none'}")
    try:
        return instantiate({k: v for k, v in node.items() if k != "name"}, _convert_="all")
    except InstantiationException as exc:  # the pruner's own check of its options: one line, by key
        if isinstance(exc.__cause__, ConfigError):
            raise exc.__cause__ from None
        raise
