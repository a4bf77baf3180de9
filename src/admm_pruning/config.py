"""Checks that run before any data is read or any folder written: bad input fails fast
with the offending key and value."""

from __future__ import annotations

from omegaconf import DictConfig
from torch import nn

from .models import prunable_layers


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
    for key in ("pretrain.epochs", "retrain.epochs"):
        if _number(key, _get(cfg, key)) < 0:
            raise ConfigError(f"{key}={_get(cfg, key)}: epoch counts must be >= 0")
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
