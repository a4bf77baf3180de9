"""W&B offline: the run completes and the run files hold the summary keys."""

import wandb

from admm_pruning.pipeline import run_experiment
from conftest import TINY, compose_cfg


def test_offline_wandb_runs_write_stage_and_summary_runs(fake_data_dir, out_dirs, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = compose_cfg(["experiment=lenet300_admm_23x", "data=mnist", f"data.data_dir={fake_data_dir}",
                       "data.verify_md5=false",
                       "data.val_size=200", "data.download=false", *TINY, *out_dirs, "logger=wandb"])
    s = run_experiment(cfg)
    wandb.teardown()  # W&B's service process writes the offline files; its teardown flushes them
    runs = sorted((tmp_path / "artifacts" / "wandb" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 4  # pretrain, admm, retrain, summary
    blobs = [r.read_bytes() for r in runs]
    summary = [b for b in blobs if b"lenet300_admm_23x-summary" in b]
    assert len(summary) == 1
    for key in (b"final_acc", b"compression", b"dense_acc", b"pruner", b"seed", b"per_layer"):
        assert key in summary[0], key
    assert repr(s["compression"]).encode() in summary[0]
    admm = [b for b in blobs if b"lenet300_admm_23x-admm" in b]
    assert admm and b"admm/primal/fc1" in admm[0] and b"admm/dual/fc1" in admm[0]


def test_broken_wandb_falls_back_to_csv(fake_data_dir, out_dirs, monkeypatch):
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken)
    monkeypatch.setenv("WANDB_MODE", "online")
    cfg = compose_cfg(["experiment=lenet300_admm_23x", "data=mnist", f"data.data_dir={fake_data_dir}",
                       "data.verify_md5=false",
                       "data.val_size=200", "data.download=false", *TINY, *out_dirs, "logger=wandb"])
    s = run_experiment(cfg)
    assert s["final_acc"] > 0
    from pathlib import Path
    assert (Path(s["stage_dirs"]["retrain"]) / "logs" / "retrain" / "metrics.csv").is_file()
