"""What a result was made on and by: the machine, the numeric stack and the code's git commit, so
that differences between results can be traced to CPU kernels, library versions or code."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[3]


def _cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform module knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(repo: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def code_version(repo: Path = REPO) -> dict[str, Any]:
    """The commit the code was run from, and whether tracked files differed from it (dirty).

    ADMM_CODE_COMMIT, when set, names the commit instead, with dirty unknown (None): a copy of
    the tree sent to another machine (a GPU machine, say) may carry no .git folder, or a stale one
    whose HEAD is not the commit the files came from."""
    given = os.environ.get("ADMM_CODE_COMMIT")
    if given:
        return {"commit": given, "dirty": None}
    commit = _git(repo, "rev-parse", "HEAD")
    if commit is None:
        return {"commit": None, "dirty": None}
    return {"commit": commit, "dirty": bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))}


_AT_START: dict[Path, dict[str, Any]] = {}


def note_code_version(repo: Path = REPO) -> None:
    """Record the code's version as a run starts: a run trains for an hour, and a commit made
    meanwhile must not be credited with its results (``provenance`` reports this record)."""
    _AT_START[repo] = code_version(repo)


def provenance(device: torch.device | str = "cpu", repo: Path = REPO) -> dict[str, Any]:
    """Machine, threads, torch / CUDA / Python versions and the git commit of this process (as
    ``note_code_version`` recorded it when the run started, where it was called)."""
    code = _AT_START.get(repo) or code_version(repo)
    device = torch.device(device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "cpu": _cpu_model(), "cpu_count": torch.multiprocessing.cpu_count(), "threads": torch.get_num_threads(),
        "device": str(device), "gpu": gpu, "torch": torch.__version__, "cuda": torch.version.cuda,
        "python": platform.python_version(), "platform": platform.platform(), **code,
    }


def describe(p: dict[str, Any]) -> str:
    """One line for a table: where and by what code a result was made."""
    where = p["gpu"] or f"{p['cpu']}, {p['threads']} thread{'s' * (p['threads'] != 1)}"
    marks = {True: " (dirty)", None: " (copied tree, not checked for edits)", False: ""}
    code = "unknown commit" if not p.get("commit") else f"git {p['commit'][:10]}" + marks[p["dirty"]]
    return f"Made on {where} ({p['device']}), torch {p['torch']}, Python {p['python']}; code {code}."
