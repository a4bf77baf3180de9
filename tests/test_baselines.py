"""Baseline pruners, compression scaling and the equal-budget rule."""

import json
import os
import subprocess
import sys

import pytest
import torch
from hydra.utils import instantiate

from admm_pruning.config import ConfigError, resolve
from admm_pruning.masks import global_magnitude_masks
from admm_pruning.models import LeNet5, LeNet300, prunable_layers
from admm_pruning.pipeline import run_experiment
from admm_pruning.projections import keep_count
from admm_pruning.pruners import HanPruner, han_dropout
from admm_pruning.targets import scale_profile
from conftest import ROOT, TINY_BASE, compose_cfg


def sizes(model):
    return {n: m.weight.numel() for n, m in prunable_layers(model).items()}


@pytest.mark.parametrize("model, profile, grid", [
    (LeNet5(), {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}, [2, 4, 8, 16, 32, 64, 128, 167]),
    (LeNet300(), {"fc1": 0.04, "fc2": 0.07, "fc3": 0.12}, [2, 4, 8, 16, 32, 64, 100]),
])
def test_compression_scaling_hits_the_requested_factor_exactly(model, profile, grid):
    s = sizes(model)
    total = sum(s.values())
    for c in grid:
        keep = scale_profile(s, profile, c)
        kept = sum(keep_count(s[n], f) for n, f in keep.items())
        assert kept == round(total / c)  # the closest whole number of weights
        assert abs(total / kept - c) / c < 1e-3
        assert all(0 < f <= 1 for f in keep.values())
    # at the preset's own factor the profile comes back unchanged
    own = total / sum(keep_count(s[n], f) for n, f in profile.items())
    assert scale_profile(s, profile, own) == pytest.approx(profile, abs=1e-12)


def test_unreachable_compression_is_refused():
    cfg = compose_cfg(["experiment=lenet300_admm_23x", "prune.compression=200000"])
    with pytest.raises(ConfigError, match="prune.compression=200000: this model reaches only"):
        resolve(cfg, LeNet300(), 0.0)


def test_han_quality_threshold_on_a_known_tensor():
    """threshold = q * std of the layer's surviving weights: [1, -2, 3, -4] has std 3.1091."""
    model = LeNet300()
    model.fc1.weight.data = torch.zeros(300, 784)
    model.fc1.weight.data[0, :4] = torch.tensor([1.0, -2.0, 3.0, -4.0])
    for q, survivors in ((0.5, [False, True, True, True]), (1.0, [False, False, False, True]), (2.0, [False] * 4)):
        mask = HanPruner(optimizer=None, quality={"fc1": q})._masks(model, {}, 1)["fc1"]
        assert mask[0, :4].tolist() == survivors and int(mask.sum()) == sum(survivors)


def test_han_keep_targets_are_reached_geometrically():
    model = LeNet300()
    pruner = HanPruner(optimizer=None, rounds=3)
    for r, expected in ((1, 0.064 ** (1 / 3)), (3, 0.064)):
        mask = pruner._masks(model, {"fc1": 0.064}, r)["fc1"]
        assert int(mask.sum()) == keep_count(235200, expected)


def test_han_dropout_adjustment():
    assert han_dropout(0.5, 25, 100) == pytest.approx(0.25)
    assert han_dropout(0.5, 400000, 400000) == 0.5
    assert han_dropout(0.5, 32000, 400000) == pytest.approx(0.5 * (0.08 ** 0.5))


def test_global_magnitude_uses_one_threshold_across_layers():
    model = LeNet300()
    masks = global_magnitude_masks(model, ["fc1", "fc2", "fc3"], 5000)
    assert sum(int(m.sum()) for m in masks.values()) == 5000
    w = {n: model.get_submodule(n).weight.detach().abs() for n in masks}
    # fc1's init is the smallest: one global threshold would leave it empty; its largest weight stays
    assert int(masks["fc1"].sum()) == 1 and masks["fc1"].flatten()[w["fc1"].argmax()]
    kept_min = min(w[n][m].min() for n, m in masks.items() if n != "fc1")
    pruned_max = max(w[n][~m].max() for n, m in masks.items())
    assert kept_min >= pruned_max


@pytest.mark.parametrize("extra, match", [
    ([], "budget.epochs=24: pruner admm trains 135 epochs"),
    (["pruner.iterations=12", "pruner.epochs_per_iteration=1", "retrain.epochs=10"],
     "retrain.epochs=10 breaks budget.epochs=24"),
])
def test_broken_budgets_are_refused(fake_data_dir, extra, match):
    from admm_pruning.data import MNISTData
    cfg = compose_cfg(["experiment=lenet5_sweep", "pruner=admm", *extra])
    data = MNISTData("mnist", str(fake_data_dir), val_size=200, download=False).setup()
    pruner = instantiate(cfg.pruner)
    with pytest.raises(ConfigError, match=match):
        resolve(cfg, LeNet5(), pruner.pruning_epochs(data))


def test_equal_budget_splits_per_pruner(fake_data_dir):
    from admm_pruning.data import MNISTData
    data = MNISTData("mnist", str(fake_data_dir), val_size=200, download=False).setup()
    plans = {}
    for p, extra in (("admm", ["pruner.iterations=12", "pruner.epochs_per_iteration=1"]),
                     ("han", ["pruner.rounds=4", "pruner.epochs_per_round=4"]), ("oneshot", []),
                     ("global_magnitude", [])):
        cfg = compose_cfg(["experiment=lenet5_sweep", f"pruner={p}", *extra])
        plans[p] = resolve(cfg, LeNet5(), instantiate(cfg.pruner).pruning_epochs(data))
    assert {p: (pl.pruning_epochs, pl.retrain_epochs) for p, pl in plans.items()} == {
        "admm": (12, 12), "han": (12, 12), "oneshot": (0, 24), "global_magnitude": (0, 24)}
    assert {pl.budget_epochs for pl in plans.values()} == {24}


@pytest.mark.parametrize("pruner, extra", [
    ("oneshot", []), ("global_magnitude", []), ("han", ["pruner.rounds=2", "pruner.epochs_per_round=1"]),
])
def test_baseline_pruners_end_to_end(fake_data_dir, out_dirs, pruner, extra):
    cfg = compose_cfg(["experiment=lenet5_sweep", "data=mnist", f"data.data_dir={fake_data_dir}",
                       "data.val_size=200", "data.download=false", *TINY_BASE, *out_dirs, f"pruner={pruner}",
                       "prune.compression=16", "budget.epochs=2", *extra])
    s = run_experiment(cfg)
    assert s["compression"] == 430500 / round(430500 / 16)
    assert s["pruner"] == pruner and s["budget_epochs"] == 2 and s["target_compression"] == 16
    per_layer = {n: d["nonzero"] for n, d in s["per_layer"].items()}
    preset = {n: keep_count(d["total"], s["keep"][n]) for n, d in s["per_layer"].items()}
    if pruner == "global_magnitude":
        assert per_layer != preset and sum(per_layer.values()) == sum(preset.values())
    else:
        assert per_layer == preset
    if pruner == "han":
        rounds = json.loads((__import__("pathlib").Path(s["stage_dirs"]["han"]) / "metrics.json").read_text())
        assert [r["round"] for r in rounds["rounds"]] == [1]


def test_multirun_of_two_jobs_through_joblib(fake_data_dir, tmp_path):
    env = {**os.environ, "ADMM_ARTIFACTS": str(tmp_path / "a"), "ADMM_RESULTS": str(tmp_path / "r"),
           "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-m", "admm_pruning.train", "-m", "experiment=lenet300_sweep", "data=mnist",
         f"data.data_dir={fake_data_dir}", "data.val_size=200", "data.download=false", *TINY_BASE,
         "pruner=oneshot", "prune.compression=4,8", "budget.epochs=1", "hydra.launcher.n_jobs=2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Joblib" in proc.stdout + proc.stderr
    found = sorted((tmp_path / "r" / "lenet300_mnist_sweep" / "runs").glob("*/summary.json"))
    assert [p.parent.name for p in found] == ["oneshot_x4_seed0", "oneshot_x8_seed0"]
    ratios = [json.loads(p.read_text())["compression"] for p in found]
    assert ratios == [266200 / round(266200 / 4), 266200 / round(266200 / 8)]
    assert len(list((tmp_path / "a" / "stages").glob("pretrain-*"))) == 1  # shared dense stage
