"""The description of every stage kind the suite caches. Their fields reproduce, key for key,
the settings dicts the stages were hashed by before descriptions existed, so every cached stage
and every published run's stage folder keeps its name (tests/test_descriptions.py pins them)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from admm_pruning.foundations.desc import Desc, keyless


@dataclass(frozen=True)
class PretrainDesc(Desc):
    """The dense model: network, data and split, trainer numerics, seed, and the recipe (or the
    sha256 of a loaded checkpoint)."""

    model: dict[str, Any]
    data: dict[str, Any]
    numerics: dict[str, Any]
    seed: int
    pretrain: dict[str, Any]

    @property
    def name(self) -> str:
        return "pretrain"


@dataclass(frozen=True)
class PruneDesc(Desc):
    """A pruner's stage: the dense parent, the pruner node (``pruners.base.keyed_node``) and the
    per-layer targets; named for the pruner."""

    parent: PretrainDesc
    pruner: dict[str, Any]
    keep: dict[str, float]
    pruner_name: str = keyless("prune")

    @property
    def name(self) -> str:
        return self.pruner_name


@dataclass(frozen=True)
class RetrainDesc(Desc):
    """Masked retraining of a pruned parent by a recipe (``Recipe.settings()``)."""

    parent: PruneDesc
    retrain: dict[str, Any]

    @property
    def name(self) -> str:
        return "retrain"


@dataclass(frozen=True)
class SensitivityDesc(Desc):
    """The per-layer sensitivity scan of a dense parent at some keep levels."""

    parent: PretrainDesc
    levels: list[float]

    @property
    def name(self) -> str:
        return "sensitivity"


@dataclass(frozen=True)
class RoundDesc(Desc):
    """Round r's retraining inside an iterative pruner's stage folder (its parent is that folder)."""

    round: int
    recipe: dict[str, Any]

    @property
    def name(self) -> str:
        return f"round{self.round}"


@dataclass(frozen=True)
class ProgressiveADMMDesc(Desc):
    """One candidate of a progressive ADMM round, in the cache every run shares: keyed by a
    fingerprint of its starting weights and masks and by the whole context (``PruneJob.key``)."""

    start: str
    keep: dict[str, float]
    seed: int
    admm: dict[str, Any]
    sparsity: dict[str, str]
    context: dict[str, Any]

    @property
    def name(self) -> str:
        return "progressive-admm"


@dataclass(frozen=True)
class ProgressiveRetrainDesc(Desc):
    """The retraining that follows a progressive round's ADMM."""

    parent: ProgressiveADMMDesc
    recipe: dict[str, Any]

    @property
    def name(self) -> str:
        return "progressive-retrain"
