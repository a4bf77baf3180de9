"""The comparison tables a tuned study reports, all paired by seed (analysis/verdicts.py).

- a pruner against another at each target: the paired difference, one Holm family over both tests
  (difference, equivalence) at every target;
- each pruner against its own dense models: the paired change, one such family;
- the frontier: per pruner, the highest target whose mean change on **validation** is >= -0.1 pt,
  then its test change, read once.
"""

from __future__ import annotations

from admm_pruning.analysis.compare import point_at, target_verdict
from admm_pruning.analysis.paired import MARGIN, Difference
from admm_pruning.analysis.runs import Point, Study
from admm_pruning.analysis.verdicts import change, difference, family, signed

HOLM = "Holm-adjusted over both tests at every target of each comparison"


def targets(s: Study) -> list[float]:
    return sorted({pt.key for pts in s.points.values() for pt in pts})


def compare_across(s: Study, a: str, b: str) -> list[tuple[float, Difference, str]]:
    """(target, a - b, outcome) at every target both ran, one Holm family."""
    pairs = [(k, pa, pb) for k in targets(s)
             if (pa := point_at(s.points.get(a, []), k)) and (pb := point_at(s.points.get(b, []), k))]
    diffs = [difference(pa, pb) for _, pa, pb in pairs]
    return [(k, d, o) for (k, _, _), d, o in zip(pairs, diffs, family(diffs, a, b), strict=True)]


def against_dense(s: Study, pruner: str, keys: list[float] | None = None) -> list[tuple[float, Difference, str]]:
    """(target, final - own dense on test, outcome) at each of the pruner's targets (or those of
    ``keys`` only), one Holm family."""
    points = [pt for pt in s.points.get(pruner, []) if keys is None or any(abs(pt.key - k) < 0.05 for k in keys)]
    diffs = [change(pt) for pt in points]
    outcomes = family(diffs, pruner, "dense")
    return [(pt.key, d, o.replace(f"{pruner} better", "above dense").replace("dense better", "below dense")
             .replace("equivalent within", "equivalent to dense within"))
            for pt, d, o in zip(points, diffs, outcomes, strict=True)]


def frontier(s: Study, pruner: str, margin: float = MARGIN) -> tuple[Point | None, Difference | None]:
    """The highest target whose mean validation change against dense is >= -margin, and its test
    change (None, None where no target qualifies or the runs recorded no validation accuracy)."""
    ok = [pt for pt in s.points.get(pruner, [])
          if all(r.get("final_val_acc") is not None and r.get("dense_val_acc") is not None for r in pt.runs)
          and change(pt, "val").mean >= -margin - 1e-12]
    if not ok:
        return None, None
    best = max(ok, key=lambda pt: pt.key)
    return best, change(best)


def comparison_table(s: Study, focus: str) -> list[str]:
    """``focus`` against every other pruner, per target: the paired difference and its outcome."""
    rivals = [p for p in s.pruners if p != focus]
    if focus not in s.points or not rivals:
        return []
    rows = {p: {k: (d, o) for k, d, o in compare_across(s, focus, p)} for p in rivals}
    lines = [f"`{focus}` minus each other pruner, test top-1 in points, paired by seed (the runs of a seed share "
             f"its dense model): mean difference (n, 95% t-interval) and outcome: better (95% interval excludes 0), "
             f"equivalent within ±{100 * MARGIN:g} pt (90% interval inside), or undecided with the seeds the "
             f"observed spread would need; {HOLM}.", "",
             "| target | " + " | ".join(f"{focus} - {p}" for p in rivals) + " |", "|---:|" + "---|" * len(rivals)]
    for k in targets(s):
        cells = [f"{signed(*rows[p][k])}: {rows[p][k][1]}" if k in rows[p] else "-" for p in rivals]
        lines.append(f"| {k:g}x | " + " | ".join(cells) + " |")
    return lines


def change_table(s: Study) -> list[str]:
    """Each pruner's change against its own dense models, per target, with its outcome."""
    rows = {p: {k: (d, o) for k, d, o in against_dense(s, p)} for p in s.pruners}
    lines = ["Change of test top-1 against each seed's own dense model, in points: mean (n, 95% t-interval) and "
             f"outcome against dense; {HOLM} (here every target is in the family; the verdict's no-loss "
             "claim tests the paper's compression alone).", "",
             "| target | " + " | ".join(s.pruners) + " |", "|---:|" + "---|" * len(s.pruners)]
    for k in targets(s):
        cells = [f"{signed(*rows[p][k])}: {rows[p][k][1]}" if k in rows[p] else "-" for p in s.pruners]
        lines.append(f"| {k:g}x | " + " | ".join(cells) + " |")
    return lines


def frontier_table(s: Study) -> list[str]:
    lines = [f"Frontier: per pruner, the highest target whose mean change against dense on validation is >= "
             f"-{100 * MARGIN:g} pt (chosen on validation), and its test change, read once.", "",
             "| pruner | frontier | validation change | test change |", "|---|---:|---:|---:|"]
    for p in s.pruners:
        pt, test = frontier(s, p)
        if pt is None:
            lines.append(f"| {p} | none | - | - |")
        else:
            lines.append(f"| {p} | {pt.key:g}x | {signed(change(pt, 'val'))} | {signed(test)} |")
    return lines


def per_target_table(s: Study) -> list[str]:
    """Mean ± sd, n and 95% interval of final test top-1 per pruner and target, with the verdict:
    a win needs the Holm-adjusted paired outcome against every other pruner (compare_across)."""
    wins = set()
    for i, a in enumerate(s.pruners):  # one family per unordered pair; its outcome names the better one
        for b in s.pruners[i + 1:]:
            for k, _, o in compare_across(s, a, b):
                wins |= {(x, y, k) for x, y in ((a, b), (b, a)) if o.startswith(f"{x} better")}
    lines = ["Final test top-1 per pruner: mean ± sd over seeds (n, 95% interval of the mean, Student t). "
             f"A pruner wins a target only if it is better than every other at 5%, paired by seed and {HOLM} "
             "(the paired tables); otherwise the target is undecided.", "",
             "| target | verdict | " + " | ".join(s.pruners) + " |", "|---:|---|" + "---:|" * len(s.pruners)]
    for k in targets(s):
        at = {p: pt for p in s.pruners if (pt := point_at(s.points[p], k)) is not None}
        cells = " | ".join(at[p].test.cell() if p in at else "-" for p in s.pruners)
        lines.append(f"| {k:g}x | {target_verdict(at, lambda a, b, k=k: (a, b, k) in wins)} | {cells} |")
    return lines
