"""Where multiruns run: joblib on this machine by default, SLURM by one override, and never
in a folder an earlier multirun wrote."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF, ROOT

STUDIES = ["lenet5_sweep", "lenet300_sweep", "lenet5_progressive", "lenet300_progressive", "lenet5_profile"]


def _hydra(overrides: list[str]):
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True).hydra


@pytest.mark.parametrize("experiment", STUDIES)
def test_a_study_composes_with_the_slurm_launcher(experiment):
    hydra = _hydra([f"experiment={experiment}", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"])
    assert hydra.launcher._target_.endswith("submitit_launcher.SlurmLauncher")
    assert hydra.launcher.partition == "gpu" and "n_jobs" not in hydra.launcher
    assert "seed" in hydra.sweeper.params  # the study's grid is untouched by the launcher choice


@pytest.mark.parametrize("experiment", STUDIES)
def test_studies_run_through_joblib_two_jobs_at_a_time_by_default(experiment):
    hydra = _hydra([f"experiment={experiment}"])
    assert hydra.launcher._target_.endswith("joblib_launcher.JoblibLauncher") and hydra.launcher.n_jobs == 2


def test_no_experiment_file_chooses_a_launcher():
    for path in (Path(CONF) / "experiment").glob("*.yaml"):
        assert "launcher" not in path.read_text(), f"{path.name} chooses a launcher; conf/train.yaml does"


def test_a_second_multirun_of_the_same_experiment_gets_its_own_folder(tmp_path):
    """Two multiruns, each of one job that stops on bad input at once: two folders, each with its .hydra/."""
    env = {**os.environ, "ADMM_ARTIFACTS": str(tmp_path / "a"), "ADMM_RESULTS": str(tmp_path / "r"),
           "DATA_DIR": str(tmp_path / "nodata"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "admm_pruning.train", "-m", "experiment=lenet5_sweep", "data=mnist10k", "seed=0",
           "pruner=oneshot", "prune.compression=4", "retrain.epochs=-1"]
    for _ in range(2):
        subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    runs = sorted((tmp_path / "a" / "multirun" / "lenet5_mnist10k_sweep").iterdir())
    assert len(runs) == 2 and all((r / "0" / ".hydra" / "overrides.yaml").is_file() for r in runs)
