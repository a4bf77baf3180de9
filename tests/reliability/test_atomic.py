"""Promise 3: results and stage artifacts are written atomically, and a damaged stage found on
rerun is reported by path and recomputed, never loaded as valid."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from admm_pruning.foundations.files import load_tensors, save_tensors, write_json
from admm_pruning.report.sparsity import write_table
from admm_pruning.store.descriptions import RoundDesc
from admm_pruning.store.stages import StageCache

from .helpers import ONESHOT, copy_run, outcome, run, stage_dir

pytestmark = pytest.mark.reliability

TABLE_SUMMARY = {"experiment": "x", "data": "mnist", "seed": 0, "split_seed": 0, "compression": 2.0,
                 "dense_acc": 0.9, "final_acc": 0.9, "per_layer": {"fc1": {"total": 4, "nonzero": 2, "kept": 0.5}}}


def half_then_fail(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data[: len(data) // 2])
    raise OSError("disk full (simulated)")


@pytest.mark.parametrize("writer", ["write_json", "save_tensors", "write_table"])
def test_a_writer_failing_midway_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, writer):
    path = tmp_path / {"write_json": "summary.json", "save_tensors": "weights.pt", "write_table": "table.md"}[writer]
    old = b"the previous complete file\n" * 100
    path.write_bytes(old)  # before the writers are patched
    monkeypatch.setattr(Path, "write_bytes", lambda self, data: half_then_fail(self, data))
    monkeypatch.setattr(Path, "write_text", lambda self, text: half_then_fail(self, text.encode()))
    call = {"write_json": lambda: write_json(path, {"a": 1}),
            "save_tensors": lambda: save_tensors(path, {"w": torch.ones(3)}),
            "write_table": lambda: write_table(path, TABLE_SUMMARY)}[writer]
    with pytest.raises(OSError, match="simulated"):
        call()
    assert path.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


# Writes half of a new weights.pt, says so, then waits to be killed.
WRITER = """
import sys, time
from pathlib import Path
import torch
from admm_pruning.foundations.files import save_tensors
def slow(p, data):
    with open(p, "wb") as f:
        f.write(data[: len(data) // 2])
        f.flush()
        open(sys.argv[2], "w").close()
        time.sleep(60)
Path.write_bytes = slow
save_tensors(Path(sys.argv[1]), {"w": torch.zeros(100_000)})
"""


def test_a_sigkilled_writer_leaves_the_old_artifact_and_the_next_compute_sweeps_its_temp_file(tmp_path):
    cache = StageCache(tmp_path)
    desc = RoundDesc(1, {"a": 1})
    d = cache.dir_for(desc)
    d.mkdir(parents=True)
    save_tensors(d / "weights.pt", {"w": torch.ones(3)})
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(d / "weights.pt"), str(ready)])
    deadline = time.monotonic() + 120
    while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert ready.exists(), "writer never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert load_tensors(d / "weights.pt")["w"].equal(torch.ones(3))  # old file intact
    assert list(d.glob(".weights.pt.*.tmp"))  # the half-written temp file the kill left
    cache.run(desc, lambda sd, resume: (save_tensors(sd / "weights.pt", {"w": torch.zeros(3)}), {})[1])
    assert not list(d.glob(".*.tmp"))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def altered(path: Path) -> None:
    """Still a valid tensor file, but not the one the stage wrote (only the sha256 can tell)."""
    t = load_tensors(path)
    t["fc3.bias"] = t["fc3.bias"] + 1
    torch.save(t, path)


@pytest.mark.parametrize("stage, name, damage", [
    ("pretrain", "weights.pt", truncate),
    ("oneshot", "masks.pt", truncate),
    ("retrain", "metrics.json", lambda p: p.write_text("{garbage")),
    ("pretrain", "weights.pt", altered),
], ids=["truncated-weights", "truncated-masks", "garbage-metrics", "altered-weights"])
def test_a_damaged_stage_is_reported_by_path_and_recomputed(baseline, data_dir, tmp_path, caplog, stage, name,
                                                            damage):
    base_root, base = baseline
    root = copy_run(base_root, tmp_path)
    target = stage_dir(root, stage) / name
    damage(target)
    with caplog.at_level(logging.WARNING, logger="admm_pruning"):
        s = run(data_dir, root, *ONESHOT)
    assert any(str(target) in r.getMessage() for r in caplog.records), caplog.text
    assert s["stage_cached"] == {k: k != stage for k in ("pretrain", "oneshot", "retrain")}
    assert outcome(s) == outcome(base)  # recomputed to the same result (deterministic CPU)
    metrics = json.loads((stage_dir(root, stage) / "metrics.json").read_text())
    assert metrics["resumed"] is False and set(metrics["artifacts"]) >= {"weights.pt"}


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_written_files_take_the_umasks_mode_not_mkstemps_private_one(tmp_path, umask, mode):
    """On a shared file system colleagues read the results: a file gets what the umask allows."""
    import os

    from admm_pruning.foundations.files import save_tensors, write_json

    old = os.umask(umask)
    try:
        write_json(tmp_path / "summary.json", {"a": 1})
        save_tensors(tmp_path / "weights.pt", {"w": torch.zeros(2)})
    finally:
        os.umask(old)
    for name in ("summary.json", "weights.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode, name

