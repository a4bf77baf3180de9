"""Checks that run before any data is read or any folder written: bad input fails fast
with the offending key and value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from omegaconf import DictConfig
from torch import nn

from .models import prunable_layers
from .targets import TargetError, scale_profile


class ConfigError(ValueError):
    """A configuration value that cannot work, named by its key."""


def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{key}={value!r}: expected a number")
    return float(value)


def validate(cfg: DictConfig, model: nn.Module) -> None:
    layers = prunable_layers(model)
    keep = cfg.prune.keep
    if not keep:
        raise ConfigError("prune.keep is empty: give per-layer keep fractions, "
                          "e.g. experiment=lenet5_admm_71x or +prune.keep.fc1=0.1")
    for name, frac in keep.items():
        if name not in layers:
            raise ConfigError(f"prune.keep.{name}: unknown layer {name!r} for model "
                              f"{cfg.model.name}; prunable layers are {', '.join(layers)}")
        if not 0.0 < _number(f"prune.keep.{name}", frac) <= 1.0:
            raise ConfigError(f"prune.keep.{name}={frac}: keep fractions must lie in (0, 1]")
    profile = _get(cfg, "prune.profile") or "preset"
    if profile not in ("preset", "sensitivity", "global_magnitude"):
        raise ConfigError(f"prune.profile={profile!r}: expected preset, sensitivity or global_magnitude")
    if profile != "preset" and _get(cfg, "prune.compression") is None:
        raise ConfigError(f"prune.profile={profile}: set prune.compression, the overall factor to split")
    for level in _get(cfg, "prune.sensitivity_levels") or []:
        if not 0.0 < _number("prune.sensitivity_levels", level) <= 1.0:
            raise ConfigError(f"prune.sensitivity_levels: {level} is not a keep fraction in (0, 1]")
    for key in ("pretrain.epochs", "retrain.epochs", "budget.epochs"):
        value = _get(cfg, key)
        if value is not None and _number(key, value) < 0:
            raise ConfigError(f"{key}={value}: epoch counts must be >= 0")
    if _get(cfg, "retrain.epochs") is None and _get(cfg, "budget.epochs") is None:
        raise ConfigError("retrain.epochs=null: set it, or set budget.epochs to derive it")
    for key in ("pretrain.batch_size", "retrain.batch_size", "pruner.batch_size",
                "pruner.iterations", "pruner.epochs_per_iteration", "pruner.rho"):
        value = _get(cfg, key)
        if value is not None and _number(key, value) <= 0:
            raise ConfigError(f"{key}={value}: must be > 0")


def _get(cfg: DictConfig, key: str) -> object:
    node: object = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return node


@dataclass
class Plan:
    """The resolved targets and epoch split of one run."""

    keep: dict[str, float]
    target_compression: float | None
    pruning_epochs: float
    retrain_epochs: int

    @property
    def budget_epochs(self) -> float:
        return self.pruning_epochs + self.retrain_epochs


def resolve(cfg: DictConfig, model: nn.Module,
            pruning_epochs: float | Callable[[dict[str, float]], float]) -> Plan:
    """Per-layer targets (scaled to ``prune.compression`` if given) and the epoch budget.

    ``pruning_epochs`` may depend on the resolved targets (progressive ADMM's round count does),
    so it can be a function of them.

    Budget rule: with ``budget.epochs`` = B, every pruner trains B epochs after the shared dense
    checkpoint: its own pruning epochs P, then retrain.epochs = B - P of the shared retraining
    recipe. An explicit retrain.epochs that breaks the rule is refused.
    """
    keep = dict(cfg.prune.keep)
    compression = _get(cfg, "prune.compression")
    if compression is not None:
        sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
        try:
            keep = scale_profile(sizes, keep, _number("prune.compression", compression))
        except TargetError as exc:
            raise ConfigError(str(exc)) from exc
    if callable(pruning_epochs):
        pruning_epochs = pruning_epochs(keep)
    retrain = _get(cfg, "retrain.epochs")
    budget = _get(cfg, "budget.epochs")
    if budget is not None:
        left = float(budget) - pruning_epochs
        if left < 0 or abs(left - round(left)) > 1e-9:
            raise ConfigError(f"budget.epochs={budget}: pruner {cfg.pruner.name} trains {pruning_epochs:g} "
                              f"epochs, leaving {left:g} for retraining (must be a whole number >= 0)")
        if retrain is not None and int(retrain) != round(left):
            raise ConfigError(f"retrain.epochs={retrain} breaks budget.epochs={budget}: pruner "
                              f"{cfg.pruner.name} trains {pruning_epochs:g} epochs, so retraining gets "
                              f"{round(left)}; leave retrain.epochs=null to derive it")
        retrain = round(left)
    return Plan(keep, None if compression is None else float(compression), pruning_epochs, int(retrain))
