"""Promise 6: no checkpoint or artifact is ever unpickled with code execution: a malicious
pickle placed as a stage's weights or as a resume checkpoint is refused, and the stage redone."""

from __future__ import annotations

import ast
import json
import logging
import os
from pathlib import Path

import pytest
import torch

from admm_pruning.foundations.files import load_tensors
from admm_pruning.store.stages import read_checkpoint

from .helpers import ONESHOT, copy_run, outcome, run, stage_dir

pytestmark = pytest.mark.reliability
SRC = Path(__file__).resolve().parents[2] / "src"


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def plant(path: Path, marker: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": Payload(marker)}, path)


def test_the_payload_is_live_and_our_loaders_refuse_it(tmp_path):
    bomb, marker = tmp_path / "evil.pt", tmp_path / "pwned"
    plant(bomb, marker)
    torch.load(bomb, weights_only=False)  # what an unsafe load would do
    assert marker.exists()
    marker.unlink()
    with pytest.raises(Exception, match="Weights only load failed"):
        load_tensors(bomb)
    assert read_checkpoint(bomb) is None and not bomb.exists()  # reported and discarded
    assert not marker.exists()


def test_every_torch_load_in_the_package_is_weights_only():
    """Explicitly: TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD can flip torch.load's default, not an explicit True."""
    calls = [(path.name, node.lineno, any(k.arg == "weights_only" and getattr(k.value, "value", None) is True
                                          for k in node.keywords))
             for path in sorted(SRC.rglob("*.py")) for node in ast.walk(ast.parse(path.read_text()))
             if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load"]
    assert calls, "expected at least load_tensors"
    assert all(safe for *_, safe in calls), [c for c in calls if not c[2]]


@pytest.mark.parametrize("recorded", [True, False], ids=["sha256-recorded", "legacy-stage"])
def test_a_malicious_weights_file_in_a_finished_stage_is_refused_and_recomputed(
        baseline, data_dir, tmp_path, caplog, monkeypatch, recorded):
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD turns torch.load's default unsafe: only explicit weights_only=True holds.
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    base_root, base = baseline
    root = copy_run(base_root, tmp_path)
    d, marker = stage_dir(root, "pretrain"), tmp_path / "pwned"
    if not recorded:  # a stage finished before artifacts were recorded: checked by a safe load instead
        metrics = json.loads((d / "metrics.json").read_text())
        del metrics["artifacts"]
        (d / "metrics.json").write_text(json.dumps(metrics))
    plant(d / "weights.pt", marker)
    with caplog.at_level(logging.WARNING, logger="admm_pruning"):
        s = run(data_dir, root, *ONESHOT)
    assert not marker.exists()
    assert str(d / "weights.pt") in caplog.text
    assert s["stage_cached"]["pretrain"] is False and outcome(s) == outcome(base)


def test_a_malicious_resume_checkpoint_is_refused_and_the_stage_restarts(baseline, data_dir, tmp_path, caplog,
                                                                          monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # Lightning's resume load would now run it
    base_root, base = baseline
    root = copy_run(base_root, tmp_path)
    d, marker = stage_dir(root, "retrain"), tmp_path / "pwned"
    (d / "metrics.json").unlink()  # an interrupted stage, with a planted checkpoint to resume from
    plant(d / "checkpoints" / "last.ckpt", marker)
    with caplog.at_level(logging.WARNING, logger="admm_pruning"):
        s = run(data_dir, root, *ONESHOT)
    assert not marker.exists()
    assert str(d / "checkpoints" / "last.ckpt") in caplog.text
    metrics = json.loads((d / "metrics.json").read_text())
    assert metrics["resumed"] is False and outcome(s) == outcome(base)
