"""The comparison report's verdicts on hand-made runs: the claim is called only where the paired
difference decides, the change is paired with each run's own dense model, and budgets stay apart."""

import pytest

from admm_pruning.analysis.budgets import budget_table, by_budget, claim_verdict, cost_lines
from admm_pruning.analysis.verdicts import change

DENSE = {1: 0.980, 2: 0.982, 3: 0.978}


def _runs(pruner, target, finals, budget=24, val=None, dense=DENSE):
    """One run per seed; validation tracks test unless given."""
    return [{"pruner": pruner, "target_compression": float(target), "compression": float(target),
             "budget_epochs": float(budget), "seed": seed, "dense_acc": dense[seed], "final_acc": f,
             "dense_val_acc": dense[seed], "final_val_acc": f if val is None else val[i], "model": "lenet5",
             "data": "mnist10k"} for i, (seed, f) in enumerate(zip(DENSE, finals, strict=True))]


def test_the_change_is_paired_with_each_runs_own_dense_model():
    s = by_budget(_runs("admm", 16, [0.981, 0.983, 0.979]))[24]
    e = change(s.points["admm"][0])
    assert e.mean == pytest.approx(0.001) and e.sd == pytest.approx(0.0, abs=1e-12) and e.n == 3


def test_the_claim_holds_only_where_the_paired_difference_decides():
    # Within 0.1 pt of the dense validation mean (98.0%): admm up to 64x, han up to 16x.
    runs = [*_runs("admm", 16, [0.981, 0.982, 0.980]), *_runs("admm", 64, [0.980, 0.981, 0.979]),
            *_runs("han", 16, [0.980, 0.981, 0.979]), *_runs("han", 64, [0.960, 0.962, 0.958])]
    text, winner = claim_verdict(by_budget(runs)[24], 24)
    assert winner == "admm" and text.startswith("At 24 epochs, the claim holds: within 0.1 pt of dense on validation, "
                                                "admm reaches 64x")
    # at 64x admm - han = 2.0, 1.9, 2.1 pts per seed: better, also after Holm over the two targets
    assert "han 16x (test change +0.00 pts" in text and "64x: admm better, +2.00 pts (n=3, 95% CI +1.75" in text
    # At 64x han's seeds now spread (-1.0, +5.1, +1.4 pts against admm): undecided, not a win.
    runs[-3:] = _runs("han", 64, [0.990, 0.930, 0.965])
    text, winner = claim_verdict(by_budget(runs)[24], 24)
    assert winner is None and text.startswith("At 24 epochs, undecided: ") and "64x: undecided (n=" in text


def test_budgets_are_reported_apart_and_a_missing_pruner_named():
    runs = [*_runs("admm", 16, [0.981, 0.982, 0.980]), *_runs("admm", 64, [0.90, 0.91, 0.92], budget=72),
            *_runs("oneshot", 64, [0.981, 0.982, 0.980], budget=72)]
    studies = by_budget(runs)
    assert list(studies) == [24, 72]
    assert budget_table(studies, 0.1)[2:] == ["| admm | 16x | none |", "| oneshot | - | 64x |"]
    assert claim_verdict(studies[72], 72) == ("At 72 epochs: admm or han is missing, no verdict.", None)


def test_cost_counts_each_shared_stage_once_times_its_threads():
    shared = {"pretrain": "/s/pre", "admm": "/s/a1", "retrain": "/s/r1"}
    runs = [{"stage_dirs": shared, "stage_cached": {"pretrain": False, "admm": False, "retrain": False},
             "stage_seconds": {"pretrain": 3600, "admm": 1800, "retrain": 1800}, "provenance": {"threads": 2}},
            {"stage_dirs": {**shared, "admm": "/s/a2", "retrain": "/s/r2"},
             "stage_cached": {"pretrain": True, "admm": False, "retrain": False},
             "stage_seconds": {"pretrain": 3600, "admm": 900, "retrain": 900}, "provenance": {"threads": 1}}]
    runs.reverse()  # the reused pretrain stage counts at the threads of the run that computed it
    assert cost_lines(runs)[0].startswith("Measured compute of these 2 runs: 4.50 CPU-hours for the 5 distinct stages")


def test_a_stage_every_run_found_cached_is_said_apart_as_wall_time():
    """The seeds' dense models of a study that reuses another study's pretraining were computed
    elsewhere, at threads these runs do not record: 1 h of retraining is measured, the 0.5 h dense
    stage is said apart as wall time (the old count folded it in at the reusing run's threads)."""
    runs = [{"stage_dirs": {"pretrain": "/s/pre", "retrain": "/s/r1"},
             "stage_cached": {"pretrain": True, "retrain": False},
             "stage_seconds": {"pretrain": 1800, "retrain": 3600}, "provenance": {"threads": 1}}]
    assert cost_lines(runs) == [
        "Measured compute of these 1 runs: 1.00 CPU-hours for the 1 distinct stages they computed (each counted once, "
        "seconds times the torch threads of the run that computed it), and 0.50 hours of wall time for 1 stage(s) "
        "every run found cached (computed before these summaries, by an earlier run or another study, threads not "
        "recorded): at least 1.50 CPU-hours in all."]


def test_the_frontier_is_chosen_on_validation_and_its_test_change_read_once():
    """64x keeps validation within 0.1 pt (-0.05) though test drops 1 pt; 128x loses 0.2 pt on
    validation though test holds: the frontier is 64x, reported with its test change, -1.00 pts."""
    from admm_pruning.analysis.claims import frontier

    val64 = [DENSE[s] - 0.0005 for s in DENSE]
    val128 = [DENSE[s] - 0.002 for s in DENSE]
    runs = [*_runs("admm", 64, [DENSE[s] - 0.01 for s in DENSE], val=val64),
            *_runs("admm", 128, list(DENSE.values()), val=val128)]
    point, test = frontier(by_budget(runs)[24], "admm")
    assert point.key == 64 and test.mean == pytest.approx(-0.01) and test.n == 3
