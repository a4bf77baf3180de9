"""Report sections that explain the curves: where each pruner removes weights, and how far each had
moved the weights toward its sparse set before the shared retraining."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from admm_pruning.analysis.compare import TIE, point_at
from admm_pruning.analysis.runs import Point, Study
from admm_pruning.analysis.verdicts import decide, difference, signed

MATCHED_TARGET = 32.0  # preferred compression for the per-layer comparison


def matched_group(points: dict[str, list[Point]]) -> tuple[float, bool]:
    """The target present for most pruners (ties: closest to 32x), else the median compression group."""
    coverage: dict[float, int] = defaultdict(int)
    for pts in points.values():
        for pt in pts:
            if pt.runs[0].get("target_compression") is not None:
                coverage[pt.key] += 1
    if coverage:
        return max(coverage, key=lambda t: (coverage[t], -abs(math.log(t / MATCHED_TARGET)))), True
    keys = sorted({pt.key for pts in points.values() for pt in pts})
    return keys[(len(keys) - 1) // 2], False


def per_layer_table(s: Study) -> list[str]:
    """Kept fraction per layer at one shared compression, to see where each pruner removes weights."""
    key, is_target = matched_group(s.points)
    at_key = {p: pt for p in s.pruners if (pt := point_at(s.points[p], key)) is not None}
    cols = list(at_key)
    layers: list[str] = []
    for pt in at_key.values():
        for run in pt.runs:
            layers += [name for name in run.get("per_layer", {}) if name not in layers]
    what = f"target compression {key:g}x" if is_target else f"median compression group ~{key:g}x"
    lines = [f"Mean kept fraction (%) over seeds at {what}.", "",
             "| layer | " + " | ".join(cols) + " |", "|---|" + "---:|" * len(cols)]
    for layer in layers:
        cells = []
        for p in cols:
            kept = [r["per_layer"][layer]["kept"] for r in at_key[p].runs if layer in r.get("per_layer", {})]
            cells.append(f"{100 * statistics.fmean(kept):.2f}" if kept else "-")
        lines.append(f"| {layer} | " + " | ".join(cells) + " |")
    return lines


def _pruned_mean(pt: Point | None) -> str:
    if pt is None or any(r.get("pruned_acc") is None for r in pt.runs):
        return "-"
    return f"{100 * statistics.fmean(r['pruned_acc'] for r in pt.runs):.2f}%"


def admm_vs_oneshot(s: Study) -> list[str]:
    """At the highest target both ran: post-prune and final accuracy of ADMM against one-shot magnitude
    pruning of the same dense weights, the final difference judged paired by seed."""
    if not {"admm", "oneshot"} <= set(s.points):
        return []
    common = [pt.key for pt in s.points["admm"] if point_at(s.points["oneshot"], pt.key) is not None]
    if not common:
        return []
    k = max(common)
    ad, on = point_at(s.points["admm"], k), point_at(s.points["oneshot"], k)
    if any(r.get("pruned_acc") is None for r in ad.runs + on.runs):
        return []
    a, o = (statistics.fmean(r["pruned_acc"] for r in pt.runs) for pt in (ad, on))
    fa, fo = ad.test.mean, on.test.mean
    budgets = sorted({r.get("budget_epochs") for r in ad.runs} - {None})
    retrain = {name: sorted({r.get("retrain_epochs") for r in pt.runs} - {None}) for name, pt in
               (("admm", ad), ("oneshot", on))}
    split = (f" (retraining epochs: admm {retrain['admm'][0]:g}, oneshot {retrain['oneshot'][0]:g})"
             if retrain["admm"] and retrain["oneshot"] else "")
    final = f"the difference is {signed(difference(ad, on))}: " + {1: "admm better at 5%", -1: "oneshot better at 5%",
                                                                     0: TIE}[decide(ad, on)]
    return ["", f"At {k:g}x, ADMM's weights score {100 * a:.2f}% right after the hard prune against "
            f"{100 * o:.2f}% for one-shot magnitude pruning of the dense weights ({100 * (a - o):+.2f} pts), "
            f"and {100 * fa:.2f}% against {100 * fo:.2f}% after retraining ({100 * (fa - fo):+.2f} pts)"
            + (f", on a budget of {budgets[0]:g} epochs{split}." if budgets else ".")
            + f" After retraining, {final}."
            + " ADMM's advantage, where it has one, is how close its W-steps bring the weights to the sparse set "
            "before the hard prune; a gain near zero or negative here means the ADMM phase (rho, iterations) was too "
            "short or too weak at this budget to repay the retraining epochs it used."]


def diagnostics_section(s: Study) -> list[str]:
    """Why the curves differ, as far as the summaries show: accuracy right after pruning (before the
    shared retraining) tells how far each pruner had already moved the weights toward its sparse set."""
    keys = sorted({pt.key for pts in s.points.values() for pt in pts})
    lines = ["Mean top-1 right after pruning, before the shared retraining (`pruned_acc`):", "",
             "| target | " + " | ".join(s.pruners) + " |", "|---:|" + "---:|" * len(s.pruners)]
    for k in keys:
        lines.append(f"| {k:g}x | " + " | ".join(_pruned_mean(point_at(s.points[p], k)) for p in s.pruners) + " |")
    lines += admm_vs_oneshot(s)
    if "han" in s.points:
        lines += ["", "`han` prunes in rounds with masked retraining between them (its pruning epochs), so each "
                  "round removes a fraction of what is left and the network adapts in between: its post-prune "
                  "accuracy is that of its last, smallest step. That is the same staging progressive ADMM uses; "
                  "a one-shot ADMM whose W-steps do not reach the sparse set pays for the whole step at once."]
    if "global_magnitude" in s.points:
        lines += ["", "`global_magnitude` chooses its own per-layer split (see the table above); the other "
                  "pruners keep the experiment's per-layer profile, so a gap between them at equal compression "
                  "can come from the profile rather than from the method."]
    return lines
