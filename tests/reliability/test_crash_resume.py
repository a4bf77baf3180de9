"""Promise 1: a run killed with SIGKILL mid-ADMM and again mid-retraining finishes when rerun,
resumes each stage from its last checkpoint, redoes no finished stage, and (deterministic CPU)
ends with exactly the uninterrupted run's results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from admm_pruning.foundations.files import load_tensors
from admm_pruning.store.stages import read_checkpoint

from .helpers import outcome, overrides, run_cli, stage_dir, start_cli, summary_at

pytestmark = pytest.mark.reliability

# rho grows and the lr drops inside every iteration, dropout draws from the global RNG while
# retraining: a resume that lost any of rho, the lr schedule or the RNG state would diverge.
CRASHY = ["pruner=admm", "pruner.iterations=4", "pruner.epochs_per_iteration=1", "pruner.rho_multiplier=1.5",
          "pruner.lr_drop_epochs=0.5", "model.dropout=0.5", "retrain.epochs=3"]


def kill_at_checkpoint(proc: subprocess.Popen, stages: Path, pattern: str, log: Path) -> Path:
    """SIGKILL ``proc`` as soon as a checkpoint matching ``pattern`` appears; returns its path."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = list(stages.glob(pattern))
        if found:
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"run ended (rc {proc.returncode}) before {pattern} appeared:\n{log.read_text()[-3000:]}")
        time.sleep(0.005)
    proc.kill()
    pytest.fail(f"{pattern} did not appear")


def test_sigkill_mid_admm_and_mid_retrain_resumes_to_the_uninterrupted_result(data_dir, tmp_path):
    ref_root, root = tmp_path / "ref", tmp_path / "crash"
    stages = root / "artifacts" / "stages"
    t = time.perf_counter()
    rc, out = run_cli(overrides(data_dir, ref_root, *CRASHY), tmp_path / "ref.log")
    t_ref = time.perf_counter() - t
    assert rc == 0, out[-3000:]

    args = overrides(data_dir, root, *CRASHY)
    t = time.perf_counter()
    ckpt = kill_at_checkpoint(start_cli(args, tmp_path / "1.log"), stages, "admm-*/checkpoints/last.ckpt",
                              tmp_path / "1.log")
    t1 = time.perf_counter() - t
    admm = ckpt.parents[1]
    assert not (admm / "metrics.json").exists()  # killed inside the stage
    admm_step = read_checkpoint(ckpt)["global_step"]
    pretrain_metrics = (stage_dir(root, "pretrain") / "metrics.json").read_text()

    t = time.perf_counter()
    ckpt = kill_at_checkpoint(start_cli(args, tmp_path / "2.log"), stages, "retrain-*/checkpoints/last.ckpt",
                              tmp_path / "2.log")
    t2 = time.perf_counter() - t
    retrain = ckpt.parents[1]
    assert not (retrain / "metrics.json").exists()
    retrain_step = read_checkpoint(ckpt)["global_step"]
    assert "stage pretrain: reused" in (tmp_path / "2.log").read_text()
    assert (stage_dir(root, "pretrain") / "metrics.json").read_text() == pretrain_metrics  # not redone

    t = time.perf_counter()
    rc, out = run_cli(args, tmp_path / "3.log")
    t3 = time.perf_counter() - t
    assert rc == 0, out[-3000:]

    s, ref = summary_at(root), summary_at(ref_root)
    assert s["stage_cached"] == {"pretrain": True, "admm": True, "retrain": False}
    for d, step in ((admm, admm_step), (retrain, retrain_step)):
        m = json.loads((d / "metrics.json").read_text())
        assert m["resumed"] is True and m["resumed_from"]["global_step"] == step > 0
    # Resuming, not restarting: the resumed part of the log starts after the checkpoint's step.
    admm_log = (admm / "logs" / "admm" / "metrics.csv").read_text().splitlines()
    first_step = int(admm_log[1].split(",")[admm_log[0].split(",").index("step")])
    assert first_step >= admm_step and (admm / "logs" / "admm" / "metrics-0.csv").is_file()

    assert outcome(s) == outcome(ref)  # every metric, exactly
    ref_admm = Path(ref["stage_dirs"]["admm"])
    assert (json.loads((admm / "metrics.json").read_text())["residuals"]
            == json.loads((ref_admm / "metrics.json").read_text())["residuals"])
    w, w_ref = load_tensors(retrain / "weights.pt"), load_tensors(Path(ref["stage_dirs"]["retrain"]) / "weights.pt")
    assert w.keys() == w_ref.keys() and all(w[k].equal(w_ref[k]) for k in w)

    overhead = t1 + t2 + t3 - t_ref
    print(f"\nresume overhead: uninterrupted {t_ref:.1f}s; killed mid-ADMM after {t1:.1f}s (step {admm_step}), "
          f"killed mid-retrain after {t2:.1f}s (step {retrain_step}), final {t3:.1f}s: "
          f"{overhead:+.1f}s in all (two extra process starts and the redone partial epochs)")
