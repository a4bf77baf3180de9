"""Stage folders named by a hash of the settings that shaped them (OpenLTH style).

A stage whose ``metrics.json`` exists is reused as it is; one with a ``checkpoints/last.ckpt``
but no metrics was interrupted and resumes from that checkpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock


def settings_hash(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    atomic_write(path, lambda p: torch.save(tensors, p))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a tensor dict; weights_only refuses pickled code."""
    return torch.load(path, map_location="cpu", weights_only=True)


@dataclass
class StageResult:
    name: str
    dir: Path
    metrics: dict[str, Any]
    cached: bool


class StageCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def dir_for(self, name: str, settings: dict[str, Any]) -> Path:
        return self.root / f"{name}-{settings_hash(settings)}"

    def run(
        self,
        name: str,
        settings: dict[str, Any],
        compute: Callable[[Path, Path | None], dict[str, Any]],
    ) -> StageResult:
        """Reuse the stage if complete, else compute it (resuming from its last checkpoint).

        A lock file serialises processes that want the same stage (parallel sweep jobs sharing
        the dense checkpoint): the first computes it, the others wait and reuse it.
        """
        d = self.dir_for(name, settings)
        done = d / "metrics.json"
        if done.is_file():
            return StageResult(name, d, json.loads(done.read_text()), cached=True)
        d.mkdir(parents=True, exist_ok=True)
        with FileLock(str(d / ".lock")):
            if done.is_file():
                return StageResult(name, d, json.loads(done.read_text()), cached=True)
            return self._compute(name, d, settings, compute)

    def _compute(self, name: str, d: Path, settings: dict[str, Any],
                 compute: Callable[[Path, Path | None], dict[str, Any]]) -> StageResult:
        done = d / "metrics.json"
        write_json(d / "settings.json", settings)
        ckpt = d / "checkpoints" / "last.ckpt"
        resume = ckpt if ckpt.is_file() else None
        start = time.perf_counter()
        metrics = compute(d, resume)
        metrics["seconds"] = time.perf_counter() - start
        metrics["resumed"] = resume is not None
        write_json(done, metrics)
        shutil.rmtree(d / "checkpoints", ignore_errors=True)
        return StageResult(name, d, metrics, cached=False)
