"""Baseline pruners, compression scaling and the equal-budget rule."""

import json
import os
import subprocess
import sys

import pytest
import torch

from admm_pruning.foundations.errors import ConfigError
from admm_pruning.models.layers import prunable_layers
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.pipeline import run_experiment
from admm_pruning.plan import initial_plan, initial_targets
from admm_pruning.pruners.base import build_pruner
from admm_pruning.pruners.han import HanPruner, quality_threshold
from admm_pruning.pruners.iterative_magnitude import IterativeMagnitudePruner, dropout_for
from admm_pruning.sparsity.masks import global_magnitude_masks
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.sparsity.targets import scale_profile
from admm_pruning.training.context import StageContext
from conftest import ROOT, TINY_BASE, compose_cfg

LENET5_SIZES = {"conv1": 500, "conv2": 25000, "fc1": 400000, "fc2": 5000}


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
        initial_targets(cfg, {"fc1": 235200, "fc2": 30000, "fc3": 1000})


def test_han_quality_is_solved_for_the_target_on_a_known_tensor():
    """threshold = q * std of the layer's surviving weights: [1, -2, 3, -4] has std 3.1091; two
    survivors need a threshold at the third magnitude, 2, so q = 2 / 3.1091."""
    w = torch.zeros(4, 4)
    w[0] = torch.tensor([1.0, -2.0, 3.0, -4.0])
    q, t, mask = quality_threshold(w, 2)
    assert t == 2.0 and q == pytest.approx(2.0 / 3.1091, rel=1e-4)
    assert mask[0].tolist() == [False, False, True, True] and int(mask.sum()) == 2
    # q is a threshold on the std: std of the magnitudes (1.291) would give q = 1.549
    assert q == pytest.approx(t / float(w[w != 0].std()))


def test_han_rounds_reach_their_targets_by_threshold():
    torch.manual_seed(0)
    model = LeNet300()
    pruner = HanPruner(optimizer=None, rounds=3)
    for r, expected in ((1, 0.064 ** (1 / 3)), (3, 0.064)):
        masks, info = pruner.round_masks(model, {"fc1": 0.064}, r)
        w = model.fc1.weight.detach().abs()
        assert int(masks["fc1"].sum()) == keep_count(235200, expected)
        threshold = info["quality"]["fc1"] * model.fc1.weight.detach().std()
        assert w[masks["fc1"]].min() > threshold >= w[~masks["fc1"]].max()


def test_iterative_magnitude_keeps_the_geometric_top_k():
    model = LeNet300()
    masks, _ = IterativeMagnitudePruner(optimizer=None, rounds=3).round_masks(model, {"fc1": 0.064}, 1)
    assert int(masks["fc1"].sum()) == keep_count(235200, 0.064 ** (1 / 3))


def test_han_dropout_adjustment():
    masks = {"fc1": torch.tensor([True] * 25 + [False] * 75)}
    assert dropout_for(0.5, masks, "fc1") == pytest.approx(0.25)
    assert dropout_for(0.5, {"fc1": torch.ones(8, dtype=torch.bool)}, "fc1") == 0.5
    assert dropout_for(0.5, masks, None) == 0.5


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
    (["pruner.iterations=30", "pruner.epochs_per_iteration=4.5"], "budget.epochs=24: pruner admm trains 135 epochs"),
    (["pruner.iterations=12", "pruner.epochs_per_iteration=1", "retrain.epochs=10"],
     "retrain.epochs=10 breaks budget.epochs=24"),
])
def test_broken_budgets_are_refused(fake_data_dir, extra, match):
    from admm_pruning.data.mnist import MNISTData
    cfg = compose_cfg(["experiment=lenet5_sweep", "pruner=admm", *extra])
    data = MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False, download=False).setup()
    with pytest.raises(ConfigError, match=match):
        initial_plan(cfg, build_pruner(cfg.pruner), LENET5_SIZES, data.steps_per_epoch)


def test_equal_budget_splits_per_pruner(fake_data_dir):
    from admm_pruning.data.mnist import MNISTData
    data = MNISTData("mnist", str(fake_data_dir), val_size=200, verify_md5=False, download=False).setup()
    plans = {}
    rounds = ["pruner.rounds=4", "pruner.epochs_per_round=4"]
    for p, extra in (("admm", ["pruner.iterations=12", "pruner.epochs_per_iteration=1"]), ("han", rounds),
                     ("iterative_magnitude", rounds), ("oneshot", []), ("global_magnitude", [])):
        cfg = compose_cfg(["experiment=lenet5_sweep", f"pruner={p}", *extra])
        plans[p] = initial_plan(cfg, build_pruner(cfg.pruner), LENET5_SIZES, data.steps_per_epoch)
    assert {p: (pl.pruning_epochs, pl.retrain_epochs) for p, pl in plans.items()} == {
        "admm": (12, 12), "han": (12, 12), "iterative_magnitude": (12, 12), "oneshot": (0, 24),
        "global_magnitude": (0, 24)}
    assert {pl.budget_epochs for pl in plans.values()} == {24}


@pytest.mark.parametrize("pruner, extra", [
    ("oneshot", []), ("global_magnitude", []), ("random", []),
    ("han", ["pruner.rounds=2", "pruner.epochs_per_round=1"]),
    ("iterative_magnitude", ["pruner.rounds=2", "pruner.epochs_per_round=1"]),
])
def test_baseline_pruners_end_to_end(fake_data_dir, out_dirs, pruner, extra):
    cfg = compose_cfg(["experiment=lenet5_sweep", "data=mnist", f"data.data_dir={fake_data_dir}",
                       "data.verify_md5=false", "data.val_size=200", "data.download=false", *TINY_BASE, *out_dirs,
                       f"pruner={pruner}", "prune.compression=16", "budget.epochs=2", *extra])
    s = run_experiment(cfg)
    assert s["compression"] == 430500 / round(430500 / 16)
    assert s["pruner"] == pruner and s["budget_epochs"] == 2 and s["target_compression"] == 16
    per_layer = {n: d["nonzero"] for n, d in s["per_layer"].items()}
    preset = {n: keep_count(d["total"], s["keep"][n]) for n, d in s["per_layer"].items()}
    if pruner == "global_magnitude":
        assert per_layer != preset and sum(per_layer.values()) == sum(preset.values())
    else:
        assert per_layer == preset
    if pruner in ("han", "iterative_magnitude"):
        rounds = json.loads((__import__("pathlib").Path(s["stage_dirs"][pruner]) / "metrics.json").read_text())
        assert [r["round"] for r in rounds["rounds"]] == [1, 2]


def test_random_pruner_keeps_exact_counts_drawn_from_the_seed():
    """Exactly keep_count weights per layer, a different draw per seed, the same draw for the same
    seed, and not the magnitude choice (the random baseline must not be magnitude pruning)."""
    from types import SimpleNamespace

    from admm_pruning.pruners.base import PruneJob
    from admm_pruning.pruners.random import RandomPruner
    from admm_pruning.sparsity.masks import magnitude_masks
    torch.manual_seed(0)
    model, keep = LeNet5(), {"conv2": 0.1, "fc1": 0.01}

    def masks(seed):
        job = PruneJob(SimpleNamespace(seed=seed), model, keep, None, {}, None, None)
        return RandomPruner().prune(job).masks

    a, b, again = masks(0), masks(1), masks(0)
    for name, frac in keep.items():
        assert int(a[name].sum()) == keep_count(a[name].numel(), frac)
        assert a[name].dtype == torch.bool and a[name].shape == prunable_layers(model)[name].weight.shape
        assert torch.equal(a[name], again[name]) and not torch.equal(a[name], b[name])
    assert not torch.equal(a["fc1"], magnitude_masks(model, keep)["fc1"])


def test_multirun_of_two_jobs_through_joblib(fake_data_dir, tmp_path):
    env = {**os.environ, "ADMM_ARTIFACTS": str(tmp_path / "a"), "ADMM_RESULTS": str(tmp_path / "r"),
           "WANDB_MODE": "disabled"}
    proc = subprocess.run(
        [sys.executable, "-m", "admm_pruning.train", "-m", "experiment=lenet300_sweep", "data=mnist",
         f"data.data_dir={fake_data_dir}", "data.verify_md5=false", "data.val_size=200", "data.download=false",
         *TINY_BASE,
         "pruner=oneshot", "prune.compression=4,8", "seed=0", "budget.epochs=1", "hydra.launcher.n_jobs=2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Joblib" in proc.stdout + proc.stderr
    found = sorted((tmp_path / "r" / "lenet300_mnist_sweep" / "runs").glob("*/summary.json"))
    assert [p.parent.name for p in found] == ["oneshot_x4_seed0", "oneshot_x8_seed0"]
    ratios = [json.loads(p.read_text())["compression"] for p in found]
    assert ratios == [266200 / round(266200 / 4), 266200 / round(266200 / 8)]
    assert len(list((tmp_path / "a" / "stages").glob("pretrain-*"))) == 1  # shared dense stage


def test_han_retrains_every_round_and_the_last_with_its_own_recipe(fake_data_dir, out_dirs, monkeypatch):
    """Han's recipe in training, not just in its formula: lr 1/10 of pretraining's, L2, and the
    dropout the mask's density gives, in the rounds and in the final retraining; the shared
    retrain recipe (lr 1e-3, no L2, dropout 0.5) is not used."""
    seen = []
    fit = StageContext.fit

    def spy(self, module, stage, *args, **kwargs):
        opt = module.optimizer_factory([torch.zeros(1, requires_grad=True)])
        seen.append((stage, opt.param_groups[0]["lr"], module.l2, module.model.dropout.p))
        return fit(self, module, stage, *args, **kwargs)

    monkeypatch.setattr(StageContext, "fit", spy)
    cfg = compose_cfg(["experiment=lenet5_han_12x", "data=mnist", f"data.data_dir={fake_data_dir}",
                       "data.verify_md5=false", "data.val_size=200", "data.download=false", *TINY_BASE, *out_dirs,
                       "retrain.epochs=1", "pruner.rounds=2", "pruner.epochs_per_round=1"])
    s = run_experiment(cfg)
    fc1 = s["per_layer"]["fc1"]
    expected_final = 0.5 * (fc1["nonzero"] / fc1["total"]) ** 0.5
    stages = {stage: rest for stage, *rest in seen}
    assert stages["pretrain"] == [1e-3, 5e-5, 0.5]
    assert stages["round1-retrain"][:2] == [pytest.approx(1e-4), 5e-5]
    assert stages["round1-retrain"][2] == pytest.approx(0.5 * (0.08 ** 0.5) ** 0.5, rel=1e-3)
    assert stages["retrain"] == [pytest.approx(1e-4), 5e-5, pytest.approx(expected_final)]
    assert s["retrain_recipe"]["l2"] == 5e-5


@pytest.mark.parametrize("pruner", ["han", "iterative_magnitude", "oneshot", "global_magnitude", "random"])
def test_structured_sparsity_is_refused_by_pruners_without_it(pruner):
    cfg = compose_cfg(["experiment=lenet5_sweep", f"pruner={pruner}", "+pruner.sparsity={conv1: filter}"])
    with pytest.raises(ConfigError, match=f"pruner.sparsity=.*pruner {pruner} does not support structured sparsity"):
        build_pruner(cfg.pruner)


def test_an_unknown_pruner_option_is_refused_by_name():
    cfg = compose_cfg(["experiment=lenet5_admm_71x", "+pruner.rhoo=1e-3"])
    with pytest.raises(ConfigError, match=r"pruner.rhoo=0.001: pruner admm does not support an option 'rhoo'"):
        build_pruner(cfg.pruner)
