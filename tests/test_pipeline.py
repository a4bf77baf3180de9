import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate

from admm_pruning.foundations.files import load_tensors
from admm_pruning.pipeline import run_experiment
from admm_pruning.pruners.admm import ADMMModule
from conftest import ROOT, TINY, compose_cfg

SUMMARY_KEYS = {"experiment", "data", "seed", "split_seed", "dense_acc", "admm_acc", "pruned_acc",
                "final_acc", "compression", "per_layer", "stage_seconds", "wall_seconds", "config"}


def fake_cfg(fake_data_dir, out_dirs, *extra):
    return compose_cfg(["experiment=lenet5_admm_71x", "data=mnist", f"data.data_dir={fake_data_dir}",
                        "data.verify_md5=false",
                        "data.val_size=200", "data.download=false", *TINY, *out_dirs, *extra])




def test_all_stages_end_to_end_on_generated_data(fake_data_dir, out_dirs, tmp_path):
    s = run_experiment(fake_cfg(fake_data_dir, out_dirs))
    assert SUMMARY_KEYS <= s.keys()
    # the paper's profile, scaled to exactly 71.2x: 6,046 kept, 3 fewer in fc1 and 1 in conv2
    assert s["compression"] == 430500 / 6046 >= 71.2
    assert s["per_layer"]["fc1"] == {"total": 400000, "nonzero": 3597, "kept": 3597 / 400000}
    # every accuracy is the one its stage's saved weights give on the test split, recomputed here
    cfg = fake_cfg(fake_data_dir, out_dirs)
    test = instantiate(cfg.data).setup().test
    for key, stage in (("dense_acc", "pretrain"), ("pruned_acc", "admm"), ("final_acc", "retrain")):
        model = instantiate(cfg.model.net).eval()
        model.load_state_dict(load_tensors(Path(s["stage_dirs"][stage]) / "weights.pt"))
        with torch.no_grad():
            assert s[key] == pytest.approx((model(test.x).argmax(1) == test.y).float().mean().item(), abs=1e-6)
    assert s["final_val_acc"] is not None and s["dense_val_acc"] is not None
    assert s["provenance"]["torch"] == torch.__version__ and len(s["provenance"]["commit"]) == 40
    assert s["final_acc"] > 0.5  # the generated classes are easy
    out = tmp_path / "results" / "lenet5_admm_71x" / "mnist" / "seed0"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["compression"] == s["compression"]
    table = (out / "table.md").read_text()
    assert "| fc1 | 400.0K | 3.6K | 0.90% | 0.9% |" in table and "71.2x" in table, table
    assert f"code git {s['provenance']['commit'][:10]}" in table
    assert s["admm"]["iterations_run"] == 2


def test_rerun_reuses_stages_and_retrain_change_keeps_pretraining(fake_data_dir, out_dirs):
    first = run_experiment(fake_cfg(fake_data_dir, out_dirs))
    again = run_experiment(fake_cfg(fake_data_dir, out_dirs))
    assert again["stage_cached"] == {"pretrain": True, "admm": True, "retrain": True}
    assert again["final_acc"] == first["final_acc"]
    changed = run_experiment(fake_cfg(fake_data_dir, out_dirs, "retrain.epochs=2"))
    assert changed["stage_cached"] == {"pretrain": True, "admm": True, "retrain": False}
    assert changed["stage_dirs"]["retrain"] != first["stage_dirs"]["retrain"]
    rho = run_experiment(fake_cfg(fake_data_dir, out_dirs, "pruner.rho=1e-3"))
    assert rho["stage_cached"] == {"pretrain": True, "admm": False, "retrain": False}


def test_interrupted_admm_stage_resumes_from_its_checkpoint(fake_data_dir, out_dirs, tmp_path, monkeypatch):
    extra = ("pruner.iterations=4", "pruner.epochs_per_iteration=1")
    reference = run_experiment(fake_cfg(fake_data_dir, [f"paths.artifacts_dir={tmp_path / 'ref'}",
                                                        f"paths.results_dir={tmp_path / 'ref_res'}"], *extra))

    def crash(self):
        if self.current_epoch == 2:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(ADMMModule, "on_train_epoch_start", crash, raising=False)
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_experiment(fake_cfg(fake_data_dir, out_dirs, *extra))
    admm_dirs = list((tmp_path / "artifacts" / "stages").glob("admm-*"))
    assert len(admm_dirs) == 1 and (admm_dirs[0] / "checkpoints" / "last.ckpt").is_file()
    assert not (admm_dirs[0] / "metrics.json").exists()
    crashed = json.loads((admm_dirs[0] / ".segment.json").read_text())
    until_ckpt = (admm_dirs[0] / "checkpoints" / "last.ckpt").stat().st_mtime - crashed["started"]

    monkeypatch.undo()
    s = run_experiment(fake_cfg(fake_data_dir, out_dirs, *extra))
    assert s["stage_cached"] == {"pretrain": True, "admm": False, "retrain": False}
    metrics = json.loads((admm_dirs[0] / "metrics.json").read_text())
    assert metrics["resumed"] is True
    # the stage's seconds count the crashed run up to its checkpoint, besides the resumed run's
    assert until_ckpt > 0 and metrics["seconds"] == pytest.approx(metrics["segment_seconds"] + until_ckpt)
    assert s["stage_seconds"]["admm"] == metrics["seconds"] and not (admm_dirs[0] / ".segment.json").exists()
    assert [r["iteration"] for r in metrics["residuals"]] == [1, 2, 3, 4]  # Z, U, history restored
    # deterministic on CPU: the resumed run equals the uninterrupted one
    assert s["admm_acc"] == reference["admm_acc"] and s["final_acc"] == reference["final_acc"]
    assert metrics["residuals"] == json.loads(
        (Path(reference["stage_dirs"]["admm"]) / "metrics.json").read_text())["residuals"]


def test_admm_stops_early_when_residuals_fall_below_eps(fake_data_dir, out_dirs):
    s = run_experiment(fake_cfg(fake_data_dir, out_dirs, "pruner.eps=1e12", "pruner.iterations=5"))
    assert s["admm"]["converged"] is True and s["admm"]["iterations_run"] == 1
    s = run_experiment(fake_cfg(fake_data_dir, out_dirs, "pruner.eps=1e-12", "pruner.iterations=3"))
    assert s["admm"]["converged"] is False and s["admm"]["iterations_run"] == 3


def cli(tmp_path, *overrides, env_extra=None):
    env = {**os.environ, "ADMM_ARTIFACTS": str(tmp_path / "a"), "ADMM_RESULTS": str(tmp_path / "r"),
           "WANDB_MODE": "disabled", **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "admm_pruning.train", *overrides], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("overrides, message", [
    (["experiment=lenet5_admm_71x", "+prune.keep.fc9=0.1"], "prune.keep.fc9: unknown layer 'fc9'"),
    (["experiment=lenet5_admm_71x", "prune.keep.fc1=0"], "prune.keep.fc1=0: keep fractions must lie in (0, 1]"),
    (["experiment=lenet5_admm_71x", "prune.keep.fc1=1.5"], "prune.keep.fc1=1.5: keep fractions"),
    (["experiment=lenet5_admm_71x", "retrain.epochs=-1"], "retrain.epochs=-1: epoch counts must be >= 0"),
    (["experiment=lenet5_admm_71x", "data.download=false"], "DATA=mnist10k"),
    (["experiment=no_such_experiment"], "Could not find 'experiment/no_such_experiment'"),
])
def test_bad_input_fails_fast_with_a_clear_message_and_writes_nothing(tmp_path, overrides, message):
    proc = cli(tmp_path, *overrides, env_extra={"DATA_DIR": str(tmp_path / "nodata")})
    assert proc.returncode != 0
    assert message in proc.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "a" / "stages").exists()


DEAD = "http://127.0.0.1:9"  # a refused proxy: no network, even on a machine that has one
NO_NETWORK = {"HTTP_PROXY": DEAD, "HTTPS_PROXY": DEAD, "http_proxy": DEAD, "https_proxy": DEAD,
              "NO_PROXY": "", "no_proxy": ""}


def test_missing_data_with_download_fails_fast_without_network(tmp_path):
    """`make reproduce-lenet5` on a machine with no MNIST: the download fails, then the message."""
    proc = cli(tmp_path, "experiment=lenet5_admm_71x", env_extra={"DATA_DIR": str(tmp_path / "nodata"), **NO_NETWORK})
    assert proc.returncode == 2
    assert str(tmp_path / "nodata") in proc.stderr and "train-images-idx3-ubyte.gz" in proc.stderr
    assert "DATA=mnist10k" in proc.stderr
    assert not (tmp_path / "nodata").exists()  # the failed download left nothing behind


def test_mnist10k_tries_the_test_set_download_and_fails_in_seconds_without_network(tmp_path):
    """`make reproduce-lenet5 DATA=mnist10k` on a fresh clone: torchvision fetches the test set where a
    network allows; without one the run stops in under 30 s, naming DATA_DIR and the files to put there."""
    start = time.monotonic()
    proc = cli(tmp_path, "experiment=lenet5_admm_71x", "data=mnist10k",
               env_extra={"DATA_DIR": str(tmp_path / "nodata"), **NO_NETWORK})
    assert time.monotonic() - start < 30
    assert proc.returncode == 2
    err = proc.stderr
    assert f"t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz not found under DATA_DIR={tmp_path / 'nodata'}" in err
    assert "the download through torchvision failed" in err and "train-images" not in err
    assert not (tmp_path / "nodata").exists() and not (tmp_path / "r").exists()


def test_a_residual_network_runs_the_whole_pipeline_and_is_reported_as_not_a_chain(fake_data_dir, out_dirs):
    """Every stage, the summary and the exports on a network with a skip path: its connectivity
    is "not a chain" (no walk along the layers), its shrunk speedup unmeasured, nothing raises."""
    s = run_experiment(compose_cfg([
        "model=lenet300", "model.name=tiny_residual", "model.net._target_=residual_net.TinyResidual",
        "~model.net.init", "+prune.keep.conv1=0.5", "+prune.keep.conv2=0.2", "+prune.keep.skip=0.5",
        "+prune.keep.fc=0.1", "data=mnist",
        f"data.data_dir={fake_data_dir}", "data.verify_md5=false", "data.val_size=200", "data.download=false",
        *TINY, *out_dirs]))
    assert s["connectivity"]["chain"] is False and "joins or splits paths" in s["connectivity"]["reason"]
    assert s["connectivity"]["disconnected"] is None
    assert s["per_layer"]["skip"]["nonzero"] == 64 and s["final_acc"] > 0.3
    assert "not a chain" in s["flops"]["shrink_error"]  # no shrunk model: its speedup is not measured


def test_the_onnx_export_carries_its_preprocessing_and_scores_the_summarys_accuracy(fake_data_dir, out_dirs):
    """With onnxruntime and numpy alone: read the scaling from the ONNX file's metadata, apply it to
    the raw test bytes, and get the summary's test top-1 (the TF LeNet-5 takes x/255, no mean/std:
    a user who standardizes silently loses accuracy)."""
    import numpy as np
    import onnxruntime

    s = run_experiment(fake_cfg(fake_data_dir, out_dirs))
    folder = Path(s["export_dir"])
    session = onnxruntime.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    pre = json.loads(session.get_modelmeta().custom_metadata_map["preprocessing"])
    assert pre["pixel_scale"] == "unit" and pre["mean"] == [0.0] and pre["std"] == [1.0]
    assert pre["input_shape"] == [1, 28, 28] and pre["classes"] == [str(d) for d in range(10)]
    raw = np.frombuffer((fake_data_dir / "mnist" / "t10k-images-idx3-ubyte").read_bytes()[16:], np.uint8)
    labels = np.frombuffer((fake_data_dir / "mnist" / "t10k-labels-idx1-ubyte").read_bytes()[8:], np.uint8)
    x = ((raw.reshape(-1, *pre["input_shape"]).astype(np.float32) * pre["scale"] - pre["mean"][0])
         / pre["std"][0]).astype(np.float32)
    acc = float((session.run(None, {"input": x})[0].argmax(1) == labels).mean())
    assert acc == pytest.approx(s["final_acc"], abs=0.5 / len(labels))
    architecture = json.loads((folder / "architecture.json").read_text())
    from safetensors import safe_open
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert json.loads(f.metadata()["preprocessing"]) == architecture["preprocessing"] == pre == s["preprocessing"]
