"""Checks that run before any data is read or any folder written: bad input fails fast
with the offending key and value."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from torch import nn

from admm_pruning.foundations.checks import as_number, dropout_rate, epochs, non_negative, positive
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.models.layers import prunable_layers
from admm_pruning.sparsity.profiles import PROFILES

MAX_SEED = 2**32 - 1  # numpy's and Lightning's seed range
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed")


def validate(cfg: DictConfig, build: Callable[[], nn.Module]) -> None:
    """Refuse a config that cannot work, naming the key and value. The plain values are checked
    first, so that a typo costs no model construction; ``build`` (a fresh model) is called only
    for the checks that need the model's layer names."""
    for path, value in _nodes(cfg):
        _check_finite(path, value)
        _check_optimizer(path, value)
    for key in ("seed", "data.split_seed"):
        value = get_key(cfg, key)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_SEED:
            raise ConfigError(f"{key}={value!r}: expected an integer from 0 to {MAX_SEED}")
    for key in ("data.verify_md5", "data.download", "flush_denormal", "fast.channels_last", "fast.fused_optimizer",
                "fast.step_masks"):
        value = get_key(cfg, key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r}: expected true or false")
    _check_targets(cfg)
    _check_schedule(cfg)
    _check_fractions(cfg)
    _check_trainer(cfg)
    checkpoint = get_key(cfg, "pretrain.checkpoint")
    if checkpoint is not None and not str(checkpoint).strip():
        raise ConfigError("pretrain.checkpoint='': give a file, or leave the key out to pretrain")
    if checkpoint is None and get_key(cfg, "pretrain.epochs") == 0:
        raise ConfigError("pretrain.epochs=0: the dense baseline would be untrained; give epochs >= 1, "
                          "or a trained model as +pretrain.checkpoint=<file>")
    layers = prunable_layers(build())
    for name in cfg.prune.keep:
        if name not in layers:
            raise ConfigError(f"prune.keep.{name}: unknown layer {name!r} for model "
                              f"{cfg.model.name}; prunable layers are {', '.join(layers)}")
    for key in ("retrain.dropout_scaled_by", "pruner.retrain_dropout_scaled_by"):
        name = get_key(cfg, key)
        if name is not None and name not in layers:
            raise ConfigError(f"{key}={name!r}: unknown layer for model {cfg.model.name}; "
                              f"prunable layers are {', '.join(layers)}")


def _nodes(cfg: DictConfig) -> list[tuple[str, Any]]:
    """Every node of the resolved config (mappings and lists too) with its dotted key, ``hydra``
    left out. Copies made by interpolation (``${retrain.optimizer}``) come last, so that a bad
    value is reported at the key where it was written rather than at a copy of it."""
    nodes = [(path, value, derived) for key in cfg if key != "hydra"
             for path, value, derived in _walk(cfg, key, str(key), False)]
    return [(path, value) for path, value, _ in sorted(nodes, key=lambda n: n[2])]


def _walk(parent: DictConfig | ListConfig, key: Any, path: str,
          derived: bool) -> Iterator[tuple[str, Any, bool]]:
    """``parent[key]`` and everything under it, depth first; ``derived`` marks interpolated copies."""
    if OmegaConf.is_missing(parent, key):
        return
    try:
        node = parent[key]
    except OmegaConfBaseException as exc:  # an interpolation that does not resolve
        raise ConfigError(f"{path}: {exc}".splitlines()[0]) from exc
    derived = derived or OmegaConf.is_interpolation(parent, key)
    yield path, node, derived
    if isinstance(node, (DictConfig, ListConfig)):
        for child in node.keys() if isinstance(node, DictConfig) else range(len(node)):
            yield from _walk(node, child, f"{path}.{child}", derived)


def _check_finite(path: str, value: Any) -> None:
    """NaN and inf pass every comparison-based check (nan > 0 is False, so is nan <= 0) and only
    show up as a non-finite loss steps later: refuse them wherever they appear."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{path}={value!r}: not a finite number")


def _check_optimizer(path: str, value: Any) -> None:
    """torch.optim accepts lr <= 0 (an lr of 0 trains nothing, a negative one climbs the loss)
    and negative momentum or decay without complaint: refuse them here, for every stage."""
    if not isinstance(value, DictConfig) or "lr" not in value:
        return
    target = value.get("_target_")
    if not (path.endswith("optimizer") or (isinstance(target, str) and target.startswith("torch.optim."))):
        return
    if as_number(f"{path}.lr", value.lr) <= 0:
        raise ConfigError(f"{path}.lr={value.lr!r}: learning rates must be > 0")
    for key in ("momentum", "weight_decay"):
        if value.get(key) is not None and as_number(f"{path}.{key}", value[key]) < 0:
            raise ConfigError(f"{path}.{key}={value[key]!r}: must be >= 0")


def _check_targets(cfg: DictConfig) -> None:
    """The pruning targets: per-layer keep fractions, the profile and the sensitivity levels."""
    keep = cfg.prune.keep
    if not keep:
        raise ConfigError("prune.keep is empty: give per-layer keep fractions, "
                          "e.g. experiment=lenet5_admm_71x or +prune.keep.fc1=0.1")
    for name, frac in keep.items():
        if not 0.0 < as_number(f"prune.keep.{name}", frac) <= 1.0:
            raise ConfigError(f"prune.keep.{name}={frac}: keep fractions must lie in (0, 1]")
    profile = get_key(cfg, "prune.profile") or "preset"
    if profile not in PROFILES:
        raise ConfigError(f"prune.profile={profile!r}: expected {', '.join(PROFILES)}")
    if profile != "preset" and get_key(cfg, "prune.compression") is None:
        raise ConfigError(f"prune.profile={profile}: set prune.compression, the overall factor to split")
    for level in get_key(cfg, "prune.sensitivity_levels") or []:
        if not 0.0 < as_number("prune.sensitivity_levels", level) <= 1.0:
            raise ConfigError(f"prune.sensitivity_levels: {level} is not a keep fraction in (0, 1]")


def _check_schedule(cfg: DictConfig) -> None:
    """Epoch counts and batch sizes of the shared stages; each pruner checks its own options
    (pruners/<name>.py, when ``build_pruner`` builds it, still before anything is read or trained)."""
    for key in ("pretrain.epochs", "retrain.epochs", "budget.epochs"):
        value = get_key(cfg, key)
        epochs(key, value)
        if key != "budget.epochs" and value is not None and value != int(value):
            raise ConfigError(f"{key}={value}: epoch counts must be whole numbers")
    if get_key(cfg, "retrain.epochs") is None and get_key(cfg, "budget.epochs") is None:
        raise ConfigError("retrain.epochs=null: set it, or set budget.epochs to derive it")
    for key in ("pretrain.batch_size", "retrain.batch_size"):
        positive(key, get_key(cfg, key))
    for key in ("pretrain.l2", "retrain.l2"):
        non_negative(key, get_key(cfg, key))


def _check_fractions(cfg: DictConfig) -> None:
    """Dropout rates in [0, 1): torch checks them only when the layer is built, which for
    retraining is after two stages have trained."""
    for key in ("model.dropout", "pretrain.dropout", "retrain.dropout"):
        dropout_rate(key, get_key(cfg, key))


def _check_trainer(cfg: DictConfig) -> None:
    """The trainer settings Lightning would take, or fail on only once training starts."""
    precision = str(get_key(cfg, "trainer.precision"))
    if precision not in PRECISIONS:
        raise ConfigError(f"trainer.precision={precision}: expected one of {', '.join(PRECISIONS)}")
    accelerator = get_key(cfg, "trainer.accelerator")
    gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        raise ConfigError(f"trainer.accelerator={accelerator}: no GPU is visible to torch on this machine")
    if precision == "16-mixed" and not gpu:
        raise ConfigError("trainer.precision=16-mixed: fp16 mixed precision needs a GPU (on the CPU Lightning "
                          "would run bf16-mixed instead); ask for trainer.precision=bf16-mixed")
    value = get_key(cfg, "trainer.accumulate_grad_batches")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"trainer.accumulate_grad_batches={value!r}: expected an integer >= 1")


def get_key(cfg: DictConfig, key: str) -> object:
    """``cfg``'s value at a dotted key, or None where any part of the path is absent."""
    node: object = cfg
    for part in key.split("."):
        node = node.get(part) if isinstance(node, DictConfig) else None
    return node
