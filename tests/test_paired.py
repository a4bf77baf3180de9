"""Paired comparisons and their verdicts against answers computed by hand."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from admm_pruning.analysis.paired import Difference, holm, outcome, paired, seeds_needed, welch
from admm_pruning.analysis.verdicts import family, signed


def test_a_constant_per_seed_difference_is_a_difference_not_a_tie():
    """The issue's example: every per-seed difference is 0.30 pt, so A is better; the old
    interval-overlap rule called it a tie (Welch alone rejects equality: t = 3.67, 4 df)."""
    a, b = [0.990, 0.991, 0.992], [0.987, 0.988, 0.989]
    d = paired(a, b)
    assert d.mean == pytest.approx(0.003) and d.n == 3 and d.sd == pytest.approx(0.0, abs=1e-12)
    assert outcome(d, "A", "B") == "A better"
    w = welch(a, b)
    assert w.mean / w.se == pytest.approx(3.674, abs=1e-3) and w.df == pytest.approx(4.0)
    assert not w.paired and outcome(w, "A", "B") == "A better"


def test_a_paired_interval_computed_by_hand():
    """d = 0.2, 0.4, 0.9 pt: mean 0.5, sd 0.3606, se 0.2082, t(0.975, 2) = 4.3027:
    95% interval 0.5 -/+ 0.8957 = (-0.3957, 1.3957) pt; p = 0.138; undecided."""
    d = paired([0.992, 0.994, 0.999], [0.990, 0.990, 0.990])
    lo, hi = d.interval(0.95)
    assert (100 * lo, 100 * hi) == pytest.approx((-0.3957, 1.3957), abs=1e-3)
    assert d.df == 2 and d.p_difference() == pytest.approx(0.1382, abs=1e-3)
    assert outcome(d, "A", "B").startswith("undecided (n=")


def test_holm_against_a_hand_computation():
    """p = 0.01, 0.04, 0.03 (m = 3): 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to
    0.06 to stay monotone. None (no test at that target) stays out of the family."""
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, None, 0.01]) == [pytest.approx(0.2), None, pytest.approx(0.02)]
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])  # capped at 1


def test_equivalence_within_the_margin():
    """d = 0.02, -0.01, 0.03, 0.00, 0.01 pt: mean 0.01, se 0.00707 pt, t(0.95, 4) = 2.132:
    the 90% interval (-0.005, 0.025) pt lies inside +-0.1 pt; the 95% one contains 0."""
    base = [0.99] * 5
    d = paired([x + e / 100 for x, e in zip(base, [0.02, -0.01, 0.03, 0.00, 0.01], strict=True)], base)
    lo, hi = d.interval(0.90)
    assert (100 * lo, 100 * hi) == pytest.approx((-0.00507, 0.02507), abs=1e-4)
    assert outcome(d, "A", "B") == "equivalent within ±0.1 pt"


def test_one_seed_gives_no_interval_and_no_verdict():
    d = paired([0.99], [0.98])
    assert d.interval() is None and d.p_difference() is None and seeds_needed(d) is None
    assert outcome(d, "A", "B") == "undecided (n=1: no spread)"


def test_holm_adjusted_p_values_can_turn_a_difference_undecided():
    """d = 0.3, 0.4, 0.2 pt: t = 5.196 on 2 df, p = 0.035 alone; the smallest of three p's is
    multiplied by 3 (0.105), so checked beside two other targets it decides nothing."""
    d = paired([0.993, 0.994, 0.992], [0.990, 0.990, 0.990])
    assert d.p_difference() == pytest.approx(0.0351, abs=1e-3) and outcome(d, "A", "B") == "A better"
    assert outcome(d, "A", "B", p_diff=holm([d.p_difference(), 0.5, 0.6])[0]).startswith("undecided")


def test_the_seeds_needed_follow_the_observed_spread():
    """mean 0.5 pt, sd 0.3606 pt: at n = 4, t(0.975, 3) x sd / 2 = 0.574 > 0.5; at n = 5,
    2.776 x 0.3606 / 2.236 = 0.448 < 0.5: five seeds would show the difference."""
    d = paired([0.992, 0.994, 0.999], [0.990, 0.990, 0.990])
    assert seeds_needed(d) == 5
    assert math.isclose(d.sd, 0.003606, rel_tol=1e-3)


def test_the_issue_example_wins_its_target_in_the_report():
    """Through the report's verdict at one target: the runs of a seed share its dense model, so the
    constant 0.30-pt difference wins (the interval-overlap rule called it a tie within noise)."""
    from admm_pruning.analysis.compare import target_verdict
    from admm_pruning.analysis.runs import Point

    accs = {"A": (0.990, 0.991, 0.992), "B": (0.987, 0.988, 0.989)}
    pts = {p: Point(p, 71.2, [{"final_acc": x, "seed": s, "dense_acc": 0.99, "compression": 71.2}
                              for s, x in enumerate(a)]) for p, a in accs.items()}
    assert target_verdict(pts) == "A wins"


def test_an_outcome_lost_to_holm_says_so_rather_than_asking_for_the_seeds_it_has():
    d = paired([0.993, 0.994, 0.992], [0.990, 0.990, 0.990])  # p = 0.035 alone
    adjusted = holm([d.p_difference(), 0.5, 0.6])[0]
    assert outcome(d, "A", "B", p_diff=adjusted) == "undecided (decided at 5% alone, not after Holm's adjustment)"


def test_holm_with_shaffers_bound_against_a_hand_computation():
    """p = 0.01, 0.04, 0.03, 0.02, at most 2 nulls true at once: 0.01 x min(4, 2) = 0.02;
    0.02 x min(3, 2) = 0.04; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04, raised to 0.06 (monotone)."""
    assert holm([0.01, 0.04, 0.03, 0.02], at_most=2) == pytest.approx([0.02, 0.06, 0.06, 0.04])


def _with_p(mean: float, p: float, n: int = 5) -> Difference:
    """A paired difference whose two-sided p of "no difference" is ``p``."""
    se = mean / stats.t.isf(p / 2, n - 1)
    return Difference(mean, se * math.sqrt(n), n, n - 1, se)


def test_both_tests_at_every_target_are_one_family():
    """Two targets, p(no difference) = 0.02 and 0.026. Adjusted apart from the equivalence tests
    they give 0.04 and 0.04: both "better" (the error rate of the comparison could reach 10%).
    In one family of four with at most two true nulls: 0.02 x 2 = 0.04, 0.026 x 2 = 0.052."""
    first, second = _with_p(0.005, 0.02), _with_p(0.005, 0.026)
    assert [d.p_difference() for d in (first, second)] == pytest.approx([0.02, 0.026])
    assert family([first, second], "A", "B") == [
        "A better", "undecided (decided at 5% alone; n=6 would decide after Holm's adjustment over 2 targets)"]


def test_one_target_keeps_its_two_tests_unadjusted():
    """At one target "no difference" and "differ by 0.1 pt or more" cannot both be true, so
    checking both costs nothing (Shaffer): TOST p = 0.031 decides equivalence, where a plain Holm
    over the two tests would double it to 0.062."""
    d = paired([0.990 + e / 100 for e in (0.05, -0.09, 0.02, -0.10, 0.04)], [0.990] * 5)
    assert d.p_equivalence() < 0.05 < 2 * d.p_equivalence()
    assert family([d], "A", "B") == ["equivalent within ±0.1 pt"]


def test_the_seeds_needed_after_the_familys_adjustment():
    """mean 0.5 pt, sd 0.3606 pt beside two other targets (alpha 0.05 / 3): at n = 6,
    t(1 - 0.05 / 6, 5) x sd / sqrt(6) = 0.520 > 0.5; at n = 7, 3.288 x 0.3606 / 2.646 = 0.448."""
    d = paired([0.992, 0.994, 0.999], [0.990, 0.990, 0.990])
    assert seeds_needed(d, alpha=0.05 / 3) == 7
    assert outcome(d, "A", "B", targets=3) == "undecided (n=7 would decide after Holm's adjustment over 3 targets)"


def test_an_equivalence_shows_the_90_percent_interval_that_decided_it():
    base = [0.99] * 5
    d = paired([x + e / 100 for x, e in zip(base, [0.02, -0.01, 0.03, 0.00, 0.01], strict=True)], base)
    assert signed(d, "equivalent within ±0.1 pt") == "+0.01 pts (n=5, 95% CI -0.01 to +0.03, 90% CI -0.01 to +0.03)"
    assert "90%" not in signed(d, "A better")


def test_welch_without_spread_still_has_its_interval():
    w = welch([0.99, 0.99], [0.98, 0.98])
    assert w.interval() == pytest.approx((0.01, 0.01)) and outcome(w, "A", "B") == "A better"


def test_runs_of_one_stage_name_with_other_dense_weights_are_not_paired():
    """A dense stage retrained under the same folder name (an emptied cache, another machine) is
    another model: the runs no longer share it, so the difference falls back to Welch, and says so."""
    from admm_pruning.analysis.runs import Point
    from admm_pruning.analysis.verdicts import difference

    def runs(accs: list[float], dense: list[float]) -> list[dict]:
        return [{"seed": s, "final_acc": a, "dense_acc": x, "dense_val_acc": x, "compression": 128.0,
                 "stage_dirs": {"pretrain": f"/m{i}/stages/pretrain-dc5e80e40554"}}
                for s, (a, x, i) in enumerate(zip(accs, dense, range(len(accs)), strict=True))]
    a = Point("admm", 128.0, runs([0.985, 0.987, 0.986], [0.9907, 0.9926, 0.9910]))
    b = Point("han", 128.0, runs([0.984, 0.985, 0.985], [0.9899, 0.9912, 0.9910]))
    d = difference(a, b)
    assert not d.paired and signed(d).endswith(", unpaired: Welch)")
    same = Point("han", 128.0, runs([0.984, 0.985, 0.985], [0.9907, 0.9926, 0.9910]))
    assert difference(a, same).paired
