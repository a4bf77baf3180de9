"""Where a run's results go: the experiment's folder, or a folder of its own for a variant.

A run whose command line changes a setting the results folder does not name (``pruner.rho=1e-3``,
``data.split_seed=1234``) is a variant of the experiment, not the experiment: it writes beside the
preset's folder, to ``<folder>+<overrides>``, and never over the preset's published result.
Overrides that only say where files are, where runs train or how they are logged, and those the
folder's own path names (``seed``, ``data``, a study's grid keys), keep the experiment's folder.
A study (multirun) keeps its grid's layout, which its reports read: there, a folder that holds a
result made with other settings is refused before anything trains, never replaced.
"""

from __future__ import annotations

import hashlib
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from admm_pruning.foundations.errors import ConfigError

# Overrides that say where files are, where runs train and how they are logged or launched (the
# summary's provenance records the machine): everything under these, and these keys themselves.
MACHINE_GROUPS = ("experiment", "paths", "hydra", "logger", "fast", "flush_denormal", "data.data_dir", "data.download")
MACHINE_KEYS = ("seed", "trainer", "trainer.accelerator", "trainer.devices", "trainer.strategy", "trainer.num_nodes",
                "trainer.enable_progress_bar")
_REFERENCE = re.compile(r"\$\{([^}]+)\}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._=,-]+")
MAX_NAME = 80


def task_overrides() -> list[str]:
    """The command line's overrides of this Hydra run (none outside one, e.g. a composed config)."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []


def in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def _raw(cfg: DictConfig, key: str) -> Any:
    node: Any = OmegaConf.to_container(cfg, resolve=False)
    for part in key.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node


def _named_keys(cfg: DictConfig) -> set[str]:
    """Every key the results folder's path interpolates, through interpolations of interpolations."""
    seen: set[str] = set()
    todo = [_raw(cfg, "results_subdir")]
    while todo:
        value = todo.pop()
        for key in _REFERENCE.findall(value) if isinstance(value, str) else []:
            if key not in seen:
                seen.add(key)
                todo.append(_raw(cfg, key))
    return seen


def variant_overrides(cfg: DictConfig, overrides: list[str]) -> list[str]:
    """The overrides that make this run a variant of its experiment, sorted."""
    named = _named_keys(cfg)
    out = []
    for item in overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if key in MACHINE_KEYS or any(key == g or key.startswith(f"{g}.") for g in MACHINE_GROUPS):
            continue
        if any(n == key or n.startswith(f"{key}.") for n in named):  # the path names it (or its group)
            continue
        out.append(item)
    return sorted(out)


def results_path(cfg: DictConfig, overrides: list[str] | None = None, multirun: bool | None = None) -> Path:
    """``<paths.results_dir>/<results_subdir>``, with ``+<variant overrides>`` for a single run's
    variant; refused where the folder holds a result made with other settings."""
    name = str(cfg.experiment_name)
    if not name.strip() or "/" in name or "\\" in name or name.startswith("."):
        raise ConfigError(f"experiment_name={name!r}: must be a non-empty folder name, not a path")
    subdir = Path(str(cfg.results_subdir))
    if subdir.is_absolute() or ".." in subdir.parts or not subdir.parts:
        raise ConfigError(f"results_subdir={str(subdir)!r}: must be a relative path inside paths.results_dir")
    variant = variant_overrides(cfg, task_overrides() if overrides is None else overrides)
    out = Path(str(cfg.paths.results_dir)) / subdir
    if variant and not (in_multirun() if multirun is None else multirun):
        tag = _UNSAFE.sub("_", ",".join(variant))
        if len(tag) > MAX_NAME:
            tag = f"{tag[:MAX_NAME - 9]}-{hashlib.sha256(','.join(variant).encode()).hexdigest()[:8]}"
        out = out.with_name(f"{out.name}+{tag}")
    recorded = _recorded_variant(out / "summary.json")
    if recorded is not None and recorded != variant:
        made = ", ".join(recorded) or "the experiment's own settings"
        raise ConfigError(f"results_subdir={subdir}: {out} holds a result made with other settings ({made}); "
                          f"give this run its own experiment_name=<name>")
    return out


def _recorded_variant(summary: Path) -> list[str] | None:
    """The variant a published summary was made with; None where there is none (or it predates the record)."""
    try:
        recorded = json.loads(summary.read_text()).get("variant")
    except (OSError, ValueError, AttributeError):
        return None
    return sorted(recorded) if isinstance(recorded, list) else None


def check_writable(key: str, value: object, folder: Path) -> None:
    """Refuse, before anything trains, a folder that cannot be created or written: a file is
    created and removed in its nearest existing ancestor (permissions, a read-only file system, a
    file in the way), so the check writes nothing. ``key=value`` is the setting that put it there."""
    ancestor = folder.absolute()
    while not ancestor.exists():
        ancestor = ancestor.parent
    try:
        if not ancestor.is_dir():
            raise NotADirectoryError(f"{ancestor} is a file")
        with tempfile.TemporaryFile(dir=ancestor):
            pass
    except OSError as exc:
        raise ConfigError(f"{key}={str(value)!r}: cannot write {folder} ({exc.strerror or exc})") from exc
