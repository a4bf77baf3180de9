"""Tuning trials of the comparison study: equal search spaces, trials applied before the checks,
the choice made on validation only, and `trial=chosen` reading it back."""

import pytest
import yaml

from admm_pruning.foundations.errors import ConfigError
from admm_pruning.plan import initial_plan
from admm_pruning.pruners.base import build_pruner
from admm_pruning.tuning.select import TuningError, as_yaml, choose, trials_by_point
from admm_pruning.tuning.trials import apply_trial, parse_override
from conftest import compose_cfg

PRUNERS = ["admm", "admm_progressive", "han", "iterative_magnitude", "oneshot", "global_magnitude", "random"]
SIZES = {"lenet5": {"conv1": 500, "conv2": 25000, "fc1": 400000, "fc2": 5000},
         "lenet300": {"fc1": 235200, "fc2": 30000, "fc3": 1000}}


@pytest.mark.parametrize("entry, key, value", [
    ("pruner.rho=1e-3", "pruner.rho", 1e-3), ("pruner.iterations=12", "pruner.iterations", 12),
    ("retrain.optimizer.lr=3e-4", "retrain.optimizer.lr", 3e-4), ("a.b=true", "a.b", True),
    ("a=[1, 2]", "a", [1, 2]), ("a=null", "a", None), ("a = 0.5", "a", 0.5)])
def test_overrides_read_values_as_the_command_line_does(entry, key, value):
    assert parse_override(entry, "w") == (key, value)


def test_an_override_without_a_value_is_refused_where_it_was_written():
    with pytest.raises(ConfigError, match=r"study.search.24\[1\]='pruner.rho': expected key=value"):
        parse_override("pruner.rho", "study.search.24[1]")


@pytest.mark.parametrize("model", ["lenet5", "lenet300"])
@pytest.mark.parametrize("budget", [24, 72])
def test_every_pruner_has_the_same_number_of_trials_and_each_trains_exactly_the_budget(model, budget):
    """Equal tuning effort and equal budgets: study.trials trials per pruner, every one of them
    applied and planned; each trains `budget` epochs after the dense model, no more, no less."""
    seen = {}
    for pruner in PRUNERS:
        for trial in range(4):
            cfg = compose_cfg([f"experiment={model}_compare_tune", f"pruner={pruner}", f"budget.epochs={budget}",
                               f"trial={trial}", "prune.compression=256"])
            record = apply_trial(cfg)
            plan = initial_plan(cfg, build_pruner(cfg.pruner), SIZES[model], lambda bs: 6000 // bs)
            assert plan.budget_epochs == budget and plan.retrain_epochs >= 1, (pruner, trial)
            assert record["of"] == cfg.study.trials == 4 and record["index"] == trial
            seen[(pruner, trial)] = tuple(sorted(record["overrides"].items()))
    for pruner in PRUNERS:  # four distinct settings, not one setting four times
        assert len({seen[(pruner, t)] for t in range(4)}) == 4, pruner


@pytest.mark.parametrize("model", ["lenet5", "lenet300"])
def test_the_tuning_grid_sweeps_every_trial_and_the_reporting_grid_fresh_seeds(model):
    from hydra import compose, initialize_config_dir

    from conftest import CONF
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        tune = compose("train", [f"experiment={model}_compare_tune"], return_hydra_config=True)
        runs = compose("train", [f"experiment={model}_compare"], return_hydra_config=True)
    grid = tune.hydra.sweeper.params
    assert grid.trial == ",".join(str(i) for i in range(tune.study.trials)) and str(grid.seed) == "0"
    assert grid.pruner == runs.hydra.sweeper.params.pruner == ",".join(PRUNERS)
    assert grid["budget.epochs"] == runs.hydra.sweeper.params["budget.epochs"] == "24,72"
    assert runs.hydra.sweeper.params.seed == "1,2,3" and runs.trial == "chosen"


def test_a_trial_sets_its_keys_and_is_recorded():
    cfg = compose_cfg(["experiment=lenet5_compare_tune", "pruner=admm", "budget.epochs=24", "trial=1"])
    apply_trial(cfg)
    assert (cfg.pruner.rho, cfg.pruner.rho_multiplier, cfg.pruner.iterations) == (1e-3, 1.3, 8)
    cfg = compose_cfg(["experiment=lenet5_compare_tune", "pruner=admm_progressive", "budget.epochs=24", "trial=2"])
    apply_trial(cfg)
    assert cfg.pruner.rounds == 3 and cfg.study.applied.overrides["pruner.round_retrain_epochs"] == 2
    assert build_pruner(cfg.pruner).n_rounds == 3  # an option the pruner's config leaves unset


@pytest.mark.parametrize("extra, match", [
    (["trial=4"], r"trial=4: pruner admm has trials 0..3 at budget 24"),
    (["trial=-1"], r"trial=-1: expected a trial index >= 0 or 'chosen'"),
    (["budget.epochs=30"], r"budget.epochs=30: pruner admm has no trials for this budget \(study.search has "
                           r"budgets 24, 72\)"),
    (["study.trials=3"], r"study.search.24: pruner admm has 4 trials, but study.trials=3: every pruner gets the same"),
    (["study.search.24=[['pruner.rhoo=1']]", "study.trials=1"],
     r"study.search.24\[0\]: pruner.rhoo is not a key of this config \(pruner admm\)"),
])
def test_bad_trials_are_refused_by_name(extra, match):
    cfg = compose_cfg(["experiment=lenet5_compare_tune", "pruner=admm", "budget.epochs=24", "trial=0", *extra])
    with pytest.raises(ConfigError, match=match):
        apply_trial(cfg)


def test_a_run_that_is_no_trial_is_left_alone():
    cfg = compose_cfg(["experiment=lenet5_admm_71x"])
    assert apply_trial(cfg) is None and cfg.pruner.rho == 1e-4


def test_chosen_without_a_tuning_phase_names_the_missing_file(tmp_path):
    cfg = compose_cfg(["experiment=lenet5_compare", "pruner=admm", f"paths.results_dir={tmp_path}"])
    with pytest.raises(ConfigError, match=r"trial=chosen: .*lenet5_mnist_compare/tuning/chosen.yaml does not exist"):
        apply_trial(cfg)


@pytest.mark.parametrize("target, trial, at", [(4, 1, 32.0), (64, 1, 32.0), (128, 3, 256.0), (512, 3, 256.0)])
def test_chosen_uses_the_tuning_target_nearest_in_log2(tmp_path, target, trial, at):
    path = tmp_path / "lenet5_mnist_compare" / "tuning" / "chosen.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"24": {"admm": {"32": 1, "256": 3}}}))
    cfg = compose_cfg(["experiment=lenet5_compare", "pruner=admm", f"paths.results_dir={tmp_path}",
                       f"prune.compression={target}"])
    record = apply_trial(cfg)
    assert (cfg.trial, record["chosen_at"]) == (trial, at)
    cfg = compose_cfg(["experiment=lenet5_compare", "pruner=han", f"paths.results_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="chose nothing for pruner han at budget 24"):
        apply_trial(cfg)


def test_the_full_mnist_points_read_the_mnist10k_studys_choice(tmp_path):
    path = tmp_path / "lenet5_mnist10k_compare" / "tuning" / "chosen.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump({"24": {"han": {"32": 2, "256": 0}}}))
    cfg = compose_cfg(["experiment=lenet5_compare_mnist", "pruner=han", "prune.compression=71.2",
                       f"paths.results_dir={tmp_path}"])
    assert cfg.data.name == "mnist" and cfg.results_subdir == "lenet5_compare_mnist/runs/b24/han_x71.2_seed0"
    assert apply_trial(cfg)["chosen_at"] == 32.0 and cfg.pruner.lr_scale == 1.0  # trial 2: rounds 3, lr 1x


def _run(pruner, trial, val, test, target=32.0, n=3, budget=24):
    return {"pruner": pruner, "budget_epochs": float(budget), "target_compression": target,
            "trial": {"index": trial, "of": n, "overrides": {"x": trial}}, "final_val_acc": val,
            "final_acc": test, "summary_path": f"{pruner}_t{trial}"}


def test_the_choice_is_made_on_validation_and_never_on_test():
    runs = [_run("admm", 0, 0.95, 0.99), _run("admm", 1, 0.97, 0.90), _run("admm", 2, 0.97, 0.98),
            _run("oneshot", 0, 0.90, 0.90), _run("oneshot", 1, 0.91, 0.80), _run("oneshot", 2, 0.80, 0.99)]
    chosen = choose(trials_by_point(runs))
    assert chosen == {(24, "admm", 32.0): 1, (24, "oneshot", 32.0): 1}  # a tie goes to the lower index
    assert as_yaml(chosen) == {"24": {"admm": {"32": 1}, "oneshot": {"32": 1}}}


def test_an_incomplete_or_unequal_search_is_refused():
    with pytest.raises(TuningError, match=r"budget 24, pruner admm, 32x: trials \[2\] of 0..2 have no summary yet"):
        choose(trials_by_point([_run("admm", 0, 0.9, 0.9), _run("admm", 1, 0.9, 0.9)]))
    with pytest.raises(TuningError, match=r"search spaces of different sizes \[2, 3\]"):
        choose(trials_by_point([_run("admm", 0, 0.9, 0.9, n=3), _run("oneshot", 0, 0.9, 0.9, n=2)]))
    with pytest.raises(TuningError, match="no validation accuracy to choose on"):
        trials_by_point([_run("admm", 0, None, 0.9)])


def test_the_cost_plan_counts_every_grid_point_and_each_seeds_dense_model_once(tmp_path):
    import json

    from admm_pruning.tuning.cost import epochs_of, grid, measured_cpu_seconds_per_epoch
    points, pretrain = grid("lenet5_compare_tune", "mnist10k", [])
    assert len(points) == 7 * 2 * 1 * 4 and pretrain == 18
    assert epochs_of(points, pretrain) == (56, 28 * 24 + 28 * 72 + 18)
    points, _ = grid("lenet5_compare", "mnist10k", ["budget.epochs=24", "pruner=admm,han"])
    assert epochs_of(points, 18) == (2 * 6 * 3, 36 * 24 + 3 * 18)
    for i, (seconds, threads, cached) in enumerate([(100, 2, False), (30, 1, False), (5, 1, True), (60, 1, False)]):
        d = tmp_path / f"r{i}"
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"retrain_epochs": 10, "stage_cached": {"retrain": cached},
                                                    "stage_seconds": {"retrain": seconds},
                                                    "provenance": {"threads": threads}}))
    assert measured_cpu_seconds_per_epoch(tmp_path) == (6.0, 3)  # median of 20, 3 and 6; the reused one left out
