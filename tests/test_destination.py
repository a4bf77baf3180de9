"""Where results go: a run with other settings than its experiment's gets a folder of its own and
never replaces a published result; names that would write outside results/ are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admm_pruning.foundations.errors import ConfigError
from admm_pruning.report.destination import results_path
from conftest import compose_cfg


def dest(tmp_path: Path, overrides: list[str], multirun: bool = False) -> Path:
    cfg = compose_cfg([*overrides, f"paths.results_dir={tmp_path}"])
    return results_path(cfg, overrides, multirun).relative_to(tmp_path)


@pytest.mark.parametrize("overrides, folder", [
    (["experiment=lenet5_admm_71x"], "lenet5_admm_71x/mnist/seed0"),
    # the seed, the data set the path names, where files go, where it trains, how it logs: the preset
    (["experiment=lenet5_admm_71x", "seed=1", "data=mnist10k", "data.data_dir=/x", "trainer.accelerator=cpu",
      "logger=csv", "fast.steps_per_batch=1"], "lenet5_admm_71x/mnist10k/seed1"),
    (["experiment=lenet5_admm_71x", "pruner.rho=1e-3"], "lenet5_admm_71x/mnist/seed0+pruner.rho=1e-3"),
    (["experiment=lenet5_admm_71x", "data.split_seed=1234", "seed=2"],
     "lenet5_admm_71x/mnist/seed2+data.split_seed=1234"),
    (["experiment=lenet5_admm_71x", "pruner=han"], "lenet5_admm_71x/mnist/seed0+pruner=han"),
    # a study's grid keys are in its folder names: its own points, not variants
    (["experiment=lenet5_compare_mnist", "pruner=han", "prune.compression=128", "budget.epochs=24", "seed=3"],
     "lenet5_compare_mnist/runs/b24/han_x128_seed3"),
])
def test_a_run_with_other_settings_than_its_experiment_gets_its_own_folder(tmp_path, overrides, folder):
    assert dest(tmp_path, overrides) == Path(folder)


def test_a_long_list_of_overrides_is_cut_and_hashed():
    names = {dest(Path("/r"), ["experiment=lenet5_admm_71x", *extra]).name
             for extra in (["pruner.rho=1e-3", "pruner.iterations=7", "pruner.epochs_per_iteration=0.5",
                            "pretrain.epochs=1", "retrain.epochs=1"],
                           ["pruner.rho=1e-3", "pruner.iterations=7", "pruner.epochs_per_iteration=0.5",
                            "pretrain.epochs=1", "retrain.epochs=2"])}
    assert len(names) == 2 and all(len(n) <= len("seed0+") + 80 for n in names), names


def test_a_study_never_replaces_a_point_made_with_other_settings(tmp_path):
    """A multirun keeps its grid's folders (its reports read them): a variant study meeting a
    published point is refused before training, and the same settings may rerun it."""
    grid = ["experiment=lenet5_compare_mnist", "pruner=han", "prune.compression=128", "seed=3"]
    point = tmp_path / dest(tmp_path, grid, multirun=True)
    point.mkdir(parents=True)
    (point / "summary.json").write_text(json.dumps({"variant": []}))
    assert dest(tmp_path, grid, multirun=True) == point.relative_to(tmp_path)
    with pytest.raises(ConfigError, match=r"holds a result made with other settings \(the experiment's own"):
        dest(tmp_path, [*grid, "pretrain.epochs=1"], multirun=True)


@pytest.mark.parametrize("name", ["''", "../x", "/etc", ".hidden"])
def test_an_empty_or_path_like_experiment_name_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match="experiment_name=.*: must be a non-empty folder name, not a path"):
        dest(tmp_path, [f"experiment_name={name}"])
