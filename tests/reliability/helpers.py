"""Tiny end-to-end runs on generated data, in this process or through the CLI in a subprocess."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from admm_pruning.pipeline import run_experiment
from conftest import ROOT, compose_cfg

# LeNet-300-100, one epoch per stage, deterministic CPU: every run here is a few seconds.
BASE = ["experiment=lenet300_admm_23x", "data=mnist", "data.val_size=200", "data.download=false",
        "logger=csv", "trainer.accelerator=cpu", "trainer.deterministic=true", "pretrain.epochs=1",
        "retrain.epochs=1"]
ONESHOT = ["pruner=oneshot"]
ADMM = ["pruner=admm", "pruner.iterations=2", "pruner.epochs_per_iteration=1"]
# What a run's outcome is judged on (timings and paths differ between runs by design).
VOLATILE = {"stage_seconds", "wall_seconds", "compute_seconds", "stage_dirs", "stage_cached", "config", "export_dir"}
RESULTS = Path("results") / "lenet300_admm_23x" / "mnist" / "seed0"


def overrides(data_dir: Path, root: Path, *extra: str) -> list[str]:
    return [*BASE, f"data.data_dir={data_dir}", "data.verify_md5=false", f"paths.artifacts_dir={root / 'artifacts'}",
            f"paths.results_dir={root / 'results'}", *extra]


def run(data_dir: Path, root: Path, *extra: str) -> dict[str, Any]:
    """One run in this process; returns its summary."""
    return run_experiment(compose_cfg(overrides(data_dir, root, *extra)))


def outcome(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in VOLATILE}


def summary_at(root: Path) -> dict[str, Any]:
    """The run's summary: in RESULTS for a run in this process, beside it for a CLI run, whose
    overrides (one epoch per stage ...) make it a variant of the experiment (report/destination.py)."""
    found = [root / RESULTS / "summary.json"] if (root / RESULTS).exists() else \
        list((root / RESULTS.parent).glob(f"{RESULTS.name}+*/summary.json"))
    (path,) = found
    return json.loads(path.read_text())


def stage_dir(root: Path, name: str) -> Path:
    (d,) = (root / "artifacts" / "stages").glob(f"{name}-*")
    return d


def copy_run(src: Path, dst: Path) -> Path:
    """A private copy of a finished run's stage folders (no results), to damage and rerun."""
    shutil.copytree(src / "artifacts" / "stages", dst / "artifacts" / "stages")
    return dst


def cli_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "WANDB_MODE": "disabled", "PYTHONUNBUFFERED": "1", **extra}


def start_cli(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """``python -m admm_pruning.train`` in the background; output to ``log`` (a pipe could fill)."""
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "admm_pruning.train", *args], cwd=ROOT,
                                env=cli_env(**env), stdout=out, stderr=subprocess.STDOUT)


def run_cli(args: list[str], log: Path, timeout: float = 300, **env: str) -> tuple[int, str]:
    proc = start_cli(args, log, **env)
    return proc.wait(timeout=timeout), log.read_text()
