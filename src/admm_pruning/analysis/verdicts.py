"""Verdicts between operating points: paired by seed where the runs share their dense models.

Every comparison the reports print goes through here: the per-seed differences of two pruners at
one target (or of a pruner against each seed's own dense model) with their t-interval, and one of
three outcomes (analysis/paired.py). Several targets of one comparison are one family, adjusted
with Holm's method.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

from admm_pruning.analysis.paired import ALPHA, MARGIN, Difference, holm, outcome, paired, welch
from admm_pruning.analysis.runs import Point

UNDECIDED = "undecided"


def dense_id(run: dict) -> tuple:
    """What identifies a run's dense model: its pretrain stage folder (a hash of everything that
    shaped it) and its dense test and validation accuracies. The folder alone is not enough: one
    description retrained on another machine (an emptied stage cache) gives other weights under
    the same name."""
    stage = (run.get("stage_dirs") or {}).get("pretrain")
    return PurePath(stage).name if stage else None, run.get("dense_acc"), run.get("dense_val_acc")


def difference(a: Point, b: Point, key: str = "final_acc") -> Difference:
    """``a`` - ``b`` on ``key``: paired over the seeds both ran when each of those seeds' runs share
    one dense model; otherwise Welch's unpaired test over all their runs (``paired`` is False)."""
    by_seed = {r["seed"]: r for r in b.runs if "seed" in r}
    shared = [(r, by_seed[r["seed"]]) for r in a.runs if r.get("seed") in by_seed]
    if shared and all(dense_id(x) == dense_id(y) for x, y in shared):
        return paired([x[key] for x, _ in shared], [y[key] for _, y in shared])
    return welch([r[key] for r in a.runs], [r[key] for r in b.runs])


def change(point: Point, split: str = "test") -> Difference:
    """Final minus each run's own dense model (test, or validation with split="val"): paired by run."""
    final, dense = ("final_val_acc", "dense_val_acc") if split == "val" else ("final_acc", "dense_acc")
    return paired([r[final] for r in point.runs], [r[dense] for r in point.runs])


def decide(a: Point, b: Point) -> int:
    """+1 when ``a`` is better at 5% (two-sided), -1 when ``b`` is, 0 when undecided."""
    d = difference(a, b)
    p = d.p_difference()
    return 0 if p is None or p >= ALPHA else (1 if d.mean > 0 else -1)


def signed(d: Difference, said: str = "") -> str:
    """'+0.30 pts (n=3, 95% CI +0.12 to +0.48)', Welch's marked; in points. Where the outcome
    ``said`` claims equivalence, the (unadjusted) 90% interval of the two one-sided tests is shown too."""
    def span(level: float) -> str:
        ci = d.interval(level)
        return "" if ci is None else f", {100 * level:g}% CI {100 * ci[0]:+.2f} to {100 * ci[1]:+.2f}"
    tost = span(0.90) if "equivalent" in said or "by less than" in said else ""
    kind = "" if d.paired else ", unpaired: Welch"
    return f"{100 * d.mean:+.2f} pts (n={d.n}{span(0.95)}{tost}{kind})"


def family(diffs: Sequence[Difference | None], a: str, b: str, margin: float = MARGIN) -> list[str | None]:
    """The outcome of each difference of one comparison at several targets. Both tests at every
    target (a difference; equivalence within the margin) form one Holm family, so the chance of
    rejecting any true null of the comparison stays under 5% (one family per comparison, none across
    comparisons); at most one of a target's two nulls ("no difference",
    "differ by at least the margin") can be true, so by Shaffer's bound no multiplier exceeds the
    number of targets tested."""
    tested = sum(1 for d in diffs if d is not None and d.p_difference() is not None)
    p = holm([d.p_difference() if d else None for d in diffs] + [d.p_equivalence(margin) if d else None for d in diffs],
             at_most=tested)
    p_diff, p_equiv = p[:len(diffs)], p[len(diffs):]
    return [None if d is None else outcome(d, a, b, 1.0 if pd is None else pd, 1.0 if pe is None else pe, margin,
                                           max(tested, 1))
            for d, pd, pe in zip(diffs, p_diff, p_equiv, strict=True)]
