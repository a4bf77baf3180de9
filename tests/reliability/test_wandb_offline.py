"""Promise 9: W&B offline, disabled or broken never fails a run, and costs it at most a few seconds."""

from __future__ import annotations

import logging
import shutil
import time

import pytest

from admm_pruning.training import loggers

from .helpers import ONESHOT, copy_run, outcome, run, stage_dir

pytestmark = pytest.mark.reliability
FAKE_KEY = "0123456789abcdef0123456789abcdef01234567"


def init_raises(*args: object, **kwargs: object) -> None:
    raise RuntimeError("W&B is broken (simulated)")


# (id, environment, W&B files expected, overrides). "unreachable": online mode with a key, against a
# port where nothing listens: W&B retries until init_timeout, once per process, then CSV.
MODES = [
    ("csv", {}, False, ["logger=csv"]),
    ("disabled", {"WANDB_MODE": "disabled"}, False, ["logger=wandb"]),
    ("offline", {"WANDB_MODE": "offline"}, True, ["logger=wandb"]),
    ("init-raises", {"WANDB_MODE": "online"}, False, ["logger=wandb"]),
    ("unreachable", {"WANDB_MODE": "online", "WANDB_API_KEY": FAKE_KEY, "WANDB_BASE_URL": "http://127.0.0.1:9"},
     False, ["logger=wandb", "logger.init_timeout=5"]),
]
SECONDS: dict[str, float] = {}


@pytest.mark.parametrize("mode, env, wandb_files, extra", MODES, ids=[m[0] for m in MODES])
def test_wandb_never_fails_or_stalls_a_run(baseline, data_dir, tmp_path, monkeypatch, caplog, mode, env, wandb_files,
                                           extra):
    monkeypatch.setattr(loggers, "_FAILED", {})  # a fresh process as far as W&B failures go
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    if mode == "init-raises":
        import wandb

        monkeypatch.setattr(wandb, "init", init_raises)
    base_root, base = baseline
    root = copy_run(base_root, tmp_path)
    shutil.rmtree(stage_dir(root, "retrain"))  # retraining and the summary run again, with this logger
    start = time.perf_counter()
    with caplog.at_level(logging.WARNING, logger="admm_pruning"):
        s = run(data_dir, root, *ONESHOT, *extra)
    SECONDS[mode] = time.perf_counter() - start
    assert outcome(s) == outcome(base)
    retrain = stage_dir(root, "retrain")
    assert (retrain / "logs" / "retrain" / "metrics.csv").is_file() != wandb_files  # else the CSV fallback
    assert bool(list((root / "artifacts").glob("wandb/wandb/offline-run-*"))) == wandb_files
    assert caplog.text.count("W&B unavailable") <= 1  # a broken W&B is tried once, not per stage
    extra_seconds = SECONDS[mode] - SECONDS.get("csv", SECONDS[mode])
    print(f"\nW&B {mode}: run {SECONDS[mode]:.1f}s, {extra_seconds:+.1f}s vs CSV")
    assert extra_seconds < 30
