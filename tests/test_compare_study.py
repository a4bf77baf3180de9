"""A tiny tuned comparison end to end, as `make compare-lenet300` runs it: the tuning multirun, the
choice on validation, the reporting multirun with trial=chosen on fresh seeds, and the report."""

import json
import os
import subprocess
import sys

import yaml

from conftest import ROOT

# The real experiments and machinery, with the test's own study (tests/conf/study/tiny_compare.yaml):
# two trials per pruner at a budget of 2 epochs.
FAKE = ["data=mnist", "data.verify_md5=false", "data.val_size=200", "data.download=false", "logger=csv",
        "trainer.accelerator=cpu", "pretrain.epochs=1", "pruner=oneshot,admm", "budget.epochs=2",
        "study=tiny_compare", f"hydra.searchpath=[file://{ROOT / 'tests' / 'conf'}]", "hydra.launcher.n_jobs=2"]


def _run(args, env):
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_a_tiny_study_tunes_chooses_on_validation_and_reports(fake_data_dir, tmp_path):
    env = {**os.environ, "ADMM_ARTIFACTS": str(tmp_path / "a"), "ADMM_RESULTS": str(tmp_path / "r"),
           "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    data = f"data.data_dir={fake_data_dir}"
    _run(["-m", "admm_pruning.train", "-m", "experiment=lenet300_compare_tune", data, *FAKE,
          "prune.compression=16", "trial=0,1"], env)
    study = tmp_path / "r" / "lenet300_mnist_compare"
    tuning = sorted(p.parent.name for p in (study / "tuning").rglob("summary.json"))
    assert tuning == [f"{p}_x16_t{t}_seed0" for p in ("admm", "oneshot") for t in range(2)]

    _run(["-m", "admm_pruning.tuning.select", str(study)], env)
    chosen = yaml.safe_load((study / "tuning" / "chosen.yaml").read_text())
    scores = {p: [json.loads((study / "tuning" / "b2" / f"{p}_x16_t{t}_seed0" / "summary.json").read_text())
                  ["final_val_acc"] for t in range(2)] for p in ("admm", "oneshot")}
    for p in scores:  # the best validation score, the lower index on a tie
        assert chosen["2"][p]["16"] == scores[p].index(max(scores[p]))
    counts = "Trials per pruner (all budgets and targets): admm 2, oneshot 2."
    assert counts in (study / "tuning" / "tuning.md").read_text()

    _run(["-m", "admm_pruning.train", "-m", "experiment=lenet300_compare", data, *FAKE,
          "prune.compression=8,16", "seed=1,2"], env)
    runs = [json.loads(p.read_text()) for p in sorted((study / "runs").rglob("summary.json"))]
    assert len(runs) == 8 and {r["seed"] for r in runs} == {1, 2}
    for r in runs:
        assert r["trial"]["index"] == chosen["2"][r["pruner"]]["16"] and r["trial"]["chosen_at"] == 16.0
        assert r["budget_epochs"] == 2

    out = _run(["-m", "admm_pruning.analysis.budgets", str(study), "--paper", "lenet300"], env)
    report = (study / "report.md").read_text()
    assert str(study / "report.md") in out and (study / "accuracy_change_vs_compression.png").stat().st_size > 0
    assert "8 reporting runs (seeds 1, 2) and 4 tuning runs (seed 0; 2 trials per pruner" in report
    assert "At 2 epochs: admm or han is missing, no verdict." in report
    assert "## Budget: 2 epochs after the dense model" in report and "(n=2, CI " in report
