"""Tuning trials: each pruner's small search space, one trial per run, applied before the checks.

A comparison study (``study=compare``) gives every pruner its own search space in
``conf/study_pruner/compare/<pruner>.yaml``, per budget (``budget.epochs``): a list of trials, each a
list of ``key=value`` overrides written as on the command line. Every pruner has the same number of
trials (``study.trials``), so no method gets more tuning than another.

``trial`` selects one: an index (the tuning phase sweeps them on the validation split), or
``chosen`` (the reporting phase), which reads the index that the tuning phase's selection wrote to
``<results>/<experiment>/tuning/chosen.yaml`` for this pruner, budget and the nearest tuning target.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from admm_pruning.config import get_key
from admm_pruning.foundations.checks import as_number
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.pruners.base import pruner_class

CHOSEN = "chosen"
_ABSENT = object()


def chosen_path(cfg: DictConfig) -> Path:
    """Where the tuning phase's choices live: beside its runs, in the study's results folder, or
    in the folder of the study named by ``study.chosen_from`` (full-MNIST points reuse mnist10k's)."""
    study = get_key(cfg, "study.chosen_from") or cfg.experiment_name
    return Path(cfg.paths.results_dir) / str(study) / "tuning" / "chosen.yaml"


def parse_override(entry: str, where: str) -> tuple[str, Any]:
    """``key=value``, the value read as the command line reads it: ``1e-3`` is a float (YAML 1.1
    alone would make it a string), ``true`` a bool, ``null`` None, ``[1, 2]`` a list."""
    if not isinstance(entry, str) or "=" not in entry:
        raise ConfigError(f"{where}={entry!r}: expected key=value")
    key, text = (part.strip() for part in entry.split("=", 1))
    for kind in (int, float):
        try:
            return key, kind(text)
        except ValueError:
            pass
    return key, yaml.safe_load(text)


def search_space(cfg: DictConfig) -> list[list[str]]:
    """This pruner's trials at this budget, with every pruner held to ``study.trials`` of them."""
    search = get_key(cfg, "study.search")
    budget = get_key(cfg, "budget.epochs")
    if not isinstance(search, DictConfig):
        raise ConfigError(f"trial={cfg.trial!r}: study {get_key(cfg, 'study.name')!r} has no search space "
                          f"for pruner {cfg.pruner.name} (conf/study_pruner/<study>/{cfg.pruner.name}.yaml)")
    trials = search.get(str(budget))
    if not isinstance(trials, ListConfig):
        budgets = ", ".join(str(k) for k in search if k != "base") or "none"
        raise ConfigError(f"budget.epochs={budget}: pruner {cfg.pruner.name} has no trials for this budget "
                          f"(study.search has budgets {budgets})")
    want = get_key(cfg, "study.trials")
    if want is None or len(trials) != int(want):
        raise ConfigError(f"study.search.{budget}: pruner {cfg.pruner.name} has {len(trials)} trials, but "
                          f"study.trials={want}: every pruner gets the same number")
    return [list(t) for t in trials]


def resolve_index(cfg: DictConfig) -> tuple[int, float | None]:
    """The trial index, and for ``chosen`` the tuning target it was chosen at."""
    trial = cfg.trial
    if trial != CHOSEN:
        if isinstance(trial, bool) or not isinstance(trial, int) or trial < 0:
            raise ConfigError(f"trial={trial!r}: expected a trial index >= 0 or {CHOSEN!r}")
        return trial, None
    path = chosen_path(cfg)
    if not path.is_file():
        raise ConfigError(f"trial=chosen: {path} does not exist; run the study's tuning phase and its "
                          f"selection first (the study's make target runs both)")
    table = (yaml.safe_load(path.read_text()) or {}).get(str(cfg.budget.epochs), {}).get(cfg.pruner.name)
    if not table:
        raise ConfigError(f"trial=chosen: {path} chose nothing for pruner {cfg.pruner.name} at budget "
                          f"{cfg.budget.epochs}; tune it first")
    target = as_number("prune.compression", cfg.prune.compression)
    at = min(table, key=lambda t: (abs(math.log2(float(t) / target)), float(t)))
    return int(table[at]), float(at)


def apply_trial(cfg: DictConfig) -> dict[str, Any] | None:
    """Apply the selected trial's overrides to ``cfg`` in place, refusing keys that do not exist,
    and record it as ``study.applied`` (the summary's ``trial``); None when the run is no trial."""
    if get_key(cfg, "trial") is None:
        return None
    trials = search_space(cfg)
    index, chosen_at = resolve_index(cfg)
    if index >= len(trials):
        raise ConfigError(f"trial={index}: pruner {cfg.pruner.name} has trials 0..{len(trials) - 1} "
                          f"at budget {cfg.budget.epochs}")
    base = list(get_key(cfg, "study.search.base") or [])
    overrides = [parse_override(e, f"study.search.{cfg.budget.epochs}[{index}]") for e in [*base, *trials[index]]]
    with open_dict(cfg):
        for key, value in overrides:
            _check_key(cfg, key, index)
            OmegaConf.update(cfg, key, value, merge=False)
        cfg.trial = index
        cfg.study.applied = {"index": index, "of": len(trials), "overrides": dict(overrides),
                             "chosen_at": chosen_at, "phase": get_key(cfg, "study.phase")}
    return OmegaConf.to_container(cfg.study.applied)


def _check_key(cfg: DictConfig, key: str, index: int) -> None:
    """A trial may set an existing key, or a pruner option its config leaves unset."""
    if OmegaConf.select(cfg, key, default=_ABSENT) is not _ABSENT:
        return
    if key.startswith("pruner.") and "." not in key[len("pruner."):]:
        if key[len("pruner."):] in pruner_class(cfg.pruner).options():
            return
    raise ConfigError(f"study.search.{cfg.budget.epochs}[{index}]: {key} is not a key of this config "
                      f"(pruner {cfg.pruner.name})")
