"""Promise 4: parallel sweep jobs sharing the dense stage train it once and never corrupt it."""

from __future__ import annotations

import json

import pytest

from admm_pruning.store.stages import artifact_problem

from .helpers import run_cli

pytestmark = pytest.mark.reliability


def test_parallel_multirun_jobs_train_the_shared_dense_stage_once(data_dir, tmp_path):
    # The sweep experiment runs its jobs through the joblib launcher, two at a time, as `make sweep-*` does.
    args = ["-m", "experiment=lenet300_sweep", "data=mnist", f"data.data_dir={data_dir}", "data.verify_md5=false",
            "data.val_size=200",
            "data.download=false", "logger=csv", "trainer.accelerator=cpu", "pretrain.epochs=2",
            "budget.epochs=1", "prune.compression=8", "seed=0", "pruner=oneshot,global_magnitude",
            "hydra.launcher.n_jobs=2", f"paths.artifacts_dir={tmp_path / 'artifacts'}",
            f"paths.results_dir={tmp_path / 'results'}"]
    rc, out = run_cli(args, tmp_path / "sweep.log", OMP_NUM_THREADS="1")
    assert rc == 0, out[-3000:]
    summaries = [json.loads(p.read_text()) for p in sorted((tmp_path / "results").rglob("summary.json"))]
    assert sorted(s["pruner"] for s in summaries) == ["global_magnitude", "oneshot"]
    assert sorted(s["stage_cached"]["pretrain"] for s in summaries) == [False, True]  # trained once
    (dense,) = (tmp_path / "artifacts" / "stages").glob("pretrain-*")
    assert {s["stage_dirs"]["pretrain"] for s in summaries} == {str(dense)}
    metrics = json.loads((dense / "metrics.json").read_text())
    assert artifact_problem(dense, metrics) is None and metrics["resumed"] is False
    assert not list((dense / "logs" / "pretrain").glob("metrics-*.csv"))  # no second training attempt
    assert all(s["compression"] == summaries[0]["compression"] > 7.9 for s in summaries)
