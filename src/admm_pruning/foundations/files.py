"""Files written so that a reader never sees half of one, and tensors read without running
pickled code: the ground floor every stage, export and report writes through."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def umask_mode() -> int:
    """The mode a plain ``open`` gives a new file under the current umask (0o644 for umask 022),
    read from /proc where it can be: setting and restoring the umask to read it would race with
    other threads creating files."""
    try:
        line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith("Umask:"))
        mask = int(line.split()[1], 8)
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0)
        os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write to a temporary file beside ``path``, then rename: readers never see half a file.
    The file gets the umask's mode, not mkstemp's private 0600: results on a shared file system
    stay readable by whoever the umask lets read them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, umask_mode())
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path, obj: Any) -> None:
    atomic_write(path, lambda p: p.write_text(json.dumps(obj, indent=2, default=str) + "\n"))


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    """Serialised in memory first: torch.save names the archive after the file, and the temporary
    file's random name would make equal tensors give different bytes (and sha256)."""
    buffer = io.BytesIO()
    torch.save(tensors, buffer)
    atomic_write(path, lambda p: p.write_bytes(buffer.getvalue()))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    """Load a tensor dict; weights_only refuses pickled code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
