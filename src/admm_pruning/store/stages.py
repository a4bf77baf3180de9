"""Stage folders named by a hash of the settings that shaped them (OpenLTH style).

A stage whose ``metrics.json`` exists and whose artifact files still match the sha256 recorded
there is reused as it is; a stage that fails that check (truncated, garbage or replaced files)
is reported by path and recomputed, never loaded. One with a ``checkpoints/last.ckpt`` but no
metrics was interrupted and resumes from that checkpoint, if it loads safely.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock

from admm_pruning.foundations.desc import Desc
from admm_pruning.foundations.files import load_tensors, sha256, write_json
from admm_pruning.training.distributed import is_launch_rank_zero, launch_job_id

log = logging.getLogger(__name__)

# metrics.json key: file name -> sha256 of every artifact (*.pt) the stage wrote in its folder.
ARTIFACTS = "artifacts"

OWNER = ".owner"  # job id of the rank 0 computing the stage (DDP ranks >= 1 join it)
SEGMENT = ".segment.json"  # when the current run of a stage began, and the seconds of earlier runs


def artifact_problem(d: Path, metrics: Any) -> str | None:
    """Why the completed stage in ``d`` cannot be trusted, or None if it can.

    Stages finished before artifacts were recorded are checked by loading each ``*.pt`` with
    weights_only=True instead (catches truncated files and pickled code, not silent edits).
    """
    if not isinstance(metrics, dict):
        return f"{d / 'metrics.json'} is not a JSON object"
    recorded = metrics.get(ARTIFACTS)
    if recorded is None:
        for path in sorted(d.glob("*.pt")):
            try:
                load_tensors(path)
            except Exception as exc:  # noqa: BLE001 - any failure means the file is unusable
                return f"{path} does not load safely ({type(exc).__name__}: {str(exc)[:200]})"
        return None
    for name, digest in recorded.items():
        path = d / name
        if not path.is_file():
            return f"{path} is missing"
        if sha256(path) != digest:
            return f"{path} does not match the sha256 recorded when the stage finished (corrupt or replaced)"
    return None


def read_checkpoint(ckpt: Path) -> dict[str, Any] | None:
    """The checkpoint as loaded with weights_only=True, or None if it is absent, unreadable or unsafe.

    Lightning's own resume load does not pass weights_only, so every checkpoint is opened here
    first: one that holds pickled code or is truncated is reported by path and discarded.
    """
    if not ckpt.is_file():
        return None
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "state_dict" not in state:
            raise ValueError("not a Lightning checkpoint")
    except Exception as exc:  # noqa: BLE001 - whatever the cause, it cannot be resumed from
        log.warning("%s: unreadable or unsafe checkpoint (%s: %s); discarding it, the stage restarts",
                    ckpt, type(exc).__name__, str(exc)[:200])
        ckpt.unlink(missing_ok=True)
        return None
    return state


def prior_seconds(d: Path, ckpt: Path, resuming: bool) -> float:
    """Seconds that earlier, interrupted runs of this stage spent up to its checkpoint, so that a
    stage resumed across sessions reports its whole cost; work after that checkpoint was lost and
    is done again, so it is not counted twice."""
    seg = d / SEGMENT
    if not resuming or not seg.is_file():
        return 0.0
    try:
        last = json.loads(seg.read_text())
        return float(last["prior_seconds"]) + max(0.0, ckpt.stat().st_mtime - float(last["started"]))
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


@dataclass
class StageResult:
    name: str
    dir: Path
    metrics: dict[str, Any]
    cached: bool


class StageCache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def dir_for(self, desc: Desc) -> Path:
        return self.root / desc.folder()

    def run(
        self,
        desc: Desc,
        compute: Callable[[Path, Path | None], dict[str, Any]],
    ) -> StageResult:
        """Reuse the stage if complete and intact, else compute it (resuming from its last checkpoint).

        A lock file serialises processes that want the same stage (parallel sweep jobs sharing
        the dense checkpoint): the first computes it, the others wait and reuse it.
        """
        name, settings = desc.name, desc.settings()
        d = self.dir_for(desc)
        metrics = self._completed(d, report=False)
        if metrics is not None:
            return StageResult(name, d, metrics, cached=True)
        d.mkdir(parents=True, exist_ok=True)
        if not is_launch_rank_zero():
            return self._follow(name, d, compute)
        with FileLock(str(d / ".lock")):
            metrics = self._completed(d, report=True)
            if metrics is not None:
                return StageResult(name, d, metrics, cached=True)
            (d / OWNER).write_text(launch_job_id())
            try:
                return self._compute(name, d, settings, compute)
            finally:
                (d / OWNER).unlink(missing_ok=True)

    def _follow(self, name: str, d: Path, compute: Callable[[Path, Path | None], dict[str, Any]]) -> StageResult:
        """DDP rank >= 1: compute the stage alongside this job's rank 0 once that rank holds the
        stage lock (the Trainers' collectives pair them up), without the lock and without the
        bookkeeping, which rank 0 writes; or reuse the stage once complete (another job's)."""
        me = launch_job_id()
        while (metrics := self._completed(d, report=False)) is None:
            owner = d / OWNER
            if owner.is_file() and owner.read_text() == me:
                ckpt = d / "checkpoints" / "last.ckpt"
                resume = ckpt if read_checkpoint(ckpt) is not None else None
                start = time.perf_counter()
                metrics = compute(d, resume)
                metrics["seconds"] = time.perf_counter() - start
                return StageResult(name, d, metrics, cached=False)
            time.sleep(1.0)
        return StageResult(name, d, metrics, cached=True)

    @staticmethod
    def _completed(d: Path, report: bool) -> dict[str, Any] | None:
        """The metrics of a finished, intact stage; a damaged one is reported and discarded
        (only with ``report``, which the caller passes while holding the stage lock)."""
        done = d / "metrics.json"
        if not done.is_file():
            return None
        try:
            metrics = json.loads(done.read_text())
            problem = artifact_problem(d, metrics)
        except (OSError, ValueError) as exc:
            problem = f"{done} is unreadable ({type(exc).__name__}: {exc})"
        if problem is None:
            return metrics
        if report:
            log.warning("stage %s is damaged: %s; recomputing it", d, problem)
            done.unlink()
        return None

    def _compute(self, name: str, d: Path, settings: dict[str, Any],
                 compute: Callable[[Path, Path | None], dict[str, Any]]) -> StageResult:
        for stale in d.glob(".*.tmp"):  # left by a writer killed mid-write; we hold the lock
            stale.unlink()
        write_json(d / "settings.json", settings)
        ckpt = d / "checkpoints" / "last.ckpt"
        state = read_checkpoint(ckpt)
        resume = ckpt if state is not None else None
        resumed_from = state and {"epoch": state.get("epoch"), "global_step": state.get("global_step")}
        del state  # Lightning loads it again; not worth holding through the stage
        prior = prior_seconds(d, ckpt, resume is not None)
        write_json(d / SEGMENT, {"started": time.time(), "prior_seconds": prior})
        start = time.perf_counter()
        metrics = compute(d, resume)
        metrics["segment_seconds"] = time.perf_counter() - start
        metrics["seconds"] = prior + metrics["segment_seconds"]  # earlier, interrupted runs included
        metrics["resumed"] = resume is not None
        if resumed_from:
            metrics["resumed_from"] = resumed_from
        metrics[ARTIFACTS] = {p.name: sha256(p) for p in sorted(d.glob("*.pt"))}
        write_json(d / "metrics.json", metrics)
        shutil.rmtree(d / "checkpoints", ignore_errors=True)
        (d / SEGMENT).unlink(missing_ok=True)
        return StageResult(name, d, metrics, cached=False)
