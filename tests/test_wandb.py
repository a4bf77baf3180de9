"""W&B offline: the runs complete, and their files hold the names, config, ADMM residuals, summary
table and stage artifacts with their lineage, read back from W&B's own records after teardown."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import struct
from dataclasses import dataclass
from pathlib import Path

import pytest
import wandb
from wandb.proto import wandb_internal_pb2 as pb

from admm_pruning import wandb_runs
from admm_pruning.pipeline import run_experiment
from admm_pruning.store.stages import StageResult
from admm_pruning.training.context import StageContext
from admm_pruning.training.loggers import wandb_logger
from conftest import TINY, compose_cfg

BLOCK = 32768  # a run file is a LevelDB-style log of protobuf records in 32 KiB blocks
POINT = "admm-x22.89-s0"  # lenet300_admm_23x keeps 11,628 of 266,200 weights: 22.89x


def wandb_records(path: Path) -> list[pb.Record]:
    """The records of an offline run file: a 7-byte file header, then chunks, each behind a 7-byte
    header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last); a block's tail shorter than a
    header is padding."""
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    records, pos, chunk = [], 7, b""
    while pos + 7 <= len(data):
        if BLOCK - pos % BLOCK < 7:
            pos += BLOCK - pos % BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk, pos = chunk + data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind in (1, 4):
            records.append(pb.Record.FromString(chunk))
            chunk = b""
    return records


@dataclass
class OfflineRun:
    folder: Path
    run: pb.RunRecord
    config: dict  # later updates by their nested key joined with "/"
    history: dict  # key -> last value
    summary: dict
    artifacts: list[pb.ArtifactRecord]


def offline_runs(root: Path) -> dict[str, OfflineRun]:
    """Every offline run under a W&B root dir, by run name."""
    runs = {}
    for path in sorted(root.glob("wandb/offline-run-*/run-*.wandb")):
        records = wandb_records(path)
        (run,) = [r.run for r in records if r.HasField("run")]
        history = {i.nested_key[0]: json.loads(i.value_json) for r in records if r.HasField("history")
                   for i in r.history.item}
        summary = {u.nested_key[0] if u.nested_key else u.key: json.loads(u.value_json) for r in records
                   if r.HasField("summary") for u in r.summary.update}
        updates = [*run.config.update, *(u for r in records if r.HasField("config") for u in r.config.update)]
        config = {u.key or "/".join(u.nested_key): json.loads(u.value_json) for u in updates}
        artifacts = [r.artifact for r in records if r.HasField("artifact")]
        runs[run.display_name] = OfflineRun(path.parent, run, config, history, summary, artifacts)
    return runs


def md5_b64(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def outputs(run: OfflineRun) -> list[pb.ArtifactRecord]:
    return [a for a in run.artifacts if not a.use_after_commit]


def inputs(run: OfflineRun) -> list[pb.ArtifactRecord]:
    return [a for a in run.artifacts if a.use_after_commit]


def check_artifact(artifact: pb.ArtifactRecord, stage_dir: Path) -> None:
    """Named after the stage folder, and its manifest lists the stage's files by their md5."""
    assert artifact.name == stage_dir.name and artifact.type == "model"
    files = {c.path: c for c in artifact.manifest.contents}
    expected = {"weights.pt", "settings.json"} | ({"masks.pt"} if (stage_dir / "masks.pt").is_file() else set())
    assert set(files) == expected
    for name, entry in files.items():
        assert Path(entry.local_path) == (stage_dir / name).resolve()
        assert entry.digest == md5_b64(stage_dir / name)


def tiny_cfg(fake_data_dir: Path, out_dirs: list[str], *extra: str):
    return compose_cfg(["experiment=lenet300_admm_23x", "data=mnist", f"data.data_dir={fake_data_dir}",
                        "data.verify_md5=false", "data.val_size=200", "data.download=false", *TINY, *out_dirs,
                        "logger=wandb", *extra])


def test_offline_runs_hold_names_config_residuals_summary_and_stage_lineage(fake_data_dir, out_dirs, tmp_path,
                                                                             monkeypatch, capfd):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = tiny_cfg(fake_data_dir, out_dirs)
    s = run_experiment(cfg)
    wandb.teardown()  # W&B's service process writes the offline files; its teardown flushes them
    assert "anonymous setting" not in capfd.readouterr().err
    root = tmp_path / "artifacts" / "wandb"
    runs = offline_runs(root)
    stages = {k: Path(v) for k, v in s["stage_dirs"].items()}
    assert sorted(runs) == sorted(f"{POINT}-{stage}" for stage in ("pretrain", "admm", "retrain", "summary"))
    for name, r in runs.items():
        assert r.run.job_type == name.removeprefix(f"{POINT}-")
        assert r.run.run_group == "lenet300_admm_23x"  # the experiment's runs together
        point = r.config["point"]
        assert point.startswith("lenet300_admm_23x-admm-x22.89-")  # the config point, seeds together
        assert set(r.run.tags) == {"admm", "mnist", "seed=0", "rho=0.0001", f"point={point}"}
        assert r.config["seed"] == 0 and r.config["pruner"]["rho"] == 1e-4 and "papers" not in r.config
        assert r.config["prune"]["keep"] == {"fc1": 0.04, "fc2": 0.07, "fc3": 0.12}
        assert r.config["paths"]["artifacts_dir"] == cfg.paths.artifacts_dir  # resolved
    assert len({r.run.run_group for r in runs.values()}) == 1
    admm = runs[f"{POINT}-admm"]
    assert {"admm/primal/fc1", "admm/dual/fc1", "admm/primal/fc3"} <= set(admm.history)
    summary = runs[f"{POINT}-summary"]
    assert summary.summary["final_acc"] == s["final_acc"] and summary.summary["compression"] == s["compression"]
    (table,) = (summary.folder / "files" / "media" / "table").glob("per_layer_*.table.json")
    rows = json.loads(table.read_text())["data"]
    assert [row[:3] for row in rows] == [[n, d["total"], d["nonzero"]] for n, d in s["per_layer"].items()]
    (point_table,) = (summary.folder / "files" / "media" / "table").glob("accuracy_vs_compression_*.table.json")
    assert json.loads(point_table.read_text())["data"] == [["lenet300_admm_23x", "mnist", "admm", 0, s["compression"],
                                                           s["final_acc"], s["dense_acc"],
                                                           pytest.approx(100 * (s["final_acc"] - s["dense_acc"]))]]
    # Lineage: each stage's run logs its outputs and uses its parent's, the very same version (digest).
    for stage in ("pretrain", "admm", "retrain"):
        (out,) = outputs(runs[f"{POINT}-{stage}"])
        check_artifact(out, stages[stage])
    assert not inputs(runs[f"{POINT}-pretrain"])
    (used,) = inputs(summary)  # the summary run uses the retrain stage, and logs the exported model
    assert (used.name, used.digest) == (outputs(runs[f"{POINT}-retrain"])[0].name,
                                        outputs(runs[f"{POINT}-retrain"])[0].digest)
    (export,) = [a for a in outputs(summary) if a.type == "model"]  # besides W&B's own run_table artifacts
    assert export.name == f"export-{stages['retrain'].name}" and export.type == "model"
    assert {c.path for c in export.manifest.contents} >= {"architecture.json", "model.safetensors", "model.onnx"}
    for stage, parent in (("admm", "pretrain"), ("retrain", "admm")):
        (used,) = inputs(runs[f"{POINT}-{stage}"])
        assert (used.name, used.digest) == (outputs(runs[f"{POINT}-{parent}"])[0].name,
                                            outputs(runs[f"{POINT}-{parent}"])[0].digest)

    # Rerun with a longer retraining: pretrain and ADMM are reused (no runs), and the new retrain
    # run still references the reused ADMM stage's artifact.
    for folder in root.glob("wandb/offline-run-*"):
        folder.rename(folder.with_name("done-" + folder.name))
    s2 = run_experiment(tiny_cfg(fake_data_dir, out_dirs, "retrain.epochs=2"))
    wandb.teardown()
    assert s2["stage_cached"] == {"pretrain": True, "admm": True, "retrain": False}
    again = offline_runs(root)
    assert sorted(again) == [f"{POINT}-retrain", f"{POINT}-summary"]
    (used,) = inputs(again[f"{POINT}-retrain"])
    assert (used.name, used.digest) == (outputs(admm)[0].name, outputs(admm)[0].digest)
    check_artifact(outputs(again[f"{POINT}-retrain"])[0], Path(s2["stage_dirs"]["retrain"]))


def test_a_failing_artifact_never_fails_the_stage(tmp_path, monkeypatch, caplog):
    """A W&B error while logging a stage's artifacts is a warning; the stage's run is still finished."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    stage_dir = tmp_path / "stages" / "retrain-0123456789ab"
    stage_dir.mkdir(parents=True)
    (stage_dir / "weights.pt").write_bytes(b"w")

    def broken(_: Path) -> None:
        raise RuntimeError("artifact store is down")

    monkeypatch.setattr(wandb_runs, "stage_artifact", broken)
    factory = lambda **kw: wandb_logger(**kw, root_dir=str(tmp_path / "wandb"))  # noqa: E731
    ctx = StageContext(data=None, trainer_kwargs={}, seed=0, experiment="t", logger_factory=factory)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        wandb_runs.finish_stage(ctx, StageResult("retrain", stage_dir, {}, cached=False), None)
    assert "artifact store is down" in caplog.text
    wandb.teardown()
    (run_file,) = (tmp_path / "wandb").glob("wandb/offline-run-*/run-*.wandb")
    records = wandb_records(run_file)
    assert [r.run.job_type for r in records if r.HasField("run")] == ["retrain"]
    assert any(r.HasField("exit") for r in records)  # finished despite the error


def test_broken_wandb_falls_back_to_csv(fake_data_dir, out_dirs, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("no network")

    monkeypatch.setattr(wandb, "init", broken)
    monkeypatch.setenv("WANDB_MODE", "online")
    s = run_experiment(tiny_cfg(fake_data_dir, out_dirs))
    assert s["final_acc"] > 0
    assert (Path(s["stage_dirs"]["retrain"]) / "logs" / "retrain" / "metrics.csv").is_file()


def test_a_killed_stage_resumes_its_own_wandb_run(fake_data_dir, out_dirs, tmp_path, monkeypatch):
    """The ADMM stage crashes after its first epochs and is run again: the resumed training logs to
    the same W&B run (its id kept in the stage folder), not to a second one."""
    from admm_pruning.pruners.admm import ADMMModule

    monkeypatch.setenv("WANDB_MODE", "offline")
    extra = ("pruner.iterations=4", "pruner.epochs_per_iteration=1")

    def crash(self):
        if self.current_epoch == 2:
            raise RuntimeError("simulated crash")

    with monkeypatch.context() as m:
        m.setattr(ADMMModule, "on_train_epoch_start", crash, raising=False)
        with pytest.raises(RuntimeError, match="simulated crash"):
            run_experiment(tiny_cfg(fake_data_dir, out_dirs, *extra))
    s = run_experiment(tiny_cfg(fake_data_dir, out_dirs, *extra))
    wandb.teardown()
    ids = {}
    for path in sorted((tmp_path / "artifacts" / "wandb").glob("wandb/offline-run-*/run-*.wandb")):
        (run,) = [r.run for r in wandb_records(path) if r.HasField("run")]
        ids.setdefault(run.display_name, []).append(run.run_id)
    admm = ids[f"{POINT}-admm"]
    assert len(admm) == 2 and admm[0] == admm[1], ids  # the crashed attempt and the resumed one
    assert (Path(s["stage_dirs"]["admm"]) / ".wandb-run-admm").read_text() == admm[0]
    assert ids[f"{POINT}-pretrain"][0] != admm[0]
