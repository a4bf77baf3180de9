"""Verdicts between pruners: a win only where the paired difference of test accuracy says so.

Two seeds that differ by a tenth of a point do not show that one method is better; every
"beats"/"dominates" the reports print goes through `versus` or `target_verdict`, so it is backed by
a paired test at 5% (analysis/verdicts.py: per-seed differences from the shared dense models, Welch
where the runs share none), and everything else is called undecided.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from admm_pruning.analysis.runs import Point, Study
from admm_pruning.analysis.verdicts import decide, difference, signed

TIE = "undecided: no difference shown at 5%"


@dataclass(frozen=True)
class Versus:
    """Outcome of one pruner against another at a tolerance: the winner (None for a tie) and why."""

    winner: str | None
    why: str


def comp(point: Point | None) -> str:
    return "none" if point is None else f"{point.compression:.2f}x"


def point_at(points: list[Point], key: float) -> Point | None:
    return next((p for p in points if p.key == key), None)


def versus(s: Study, a: str, b: str, tol: float = 0.5) -> Versus:
    """Does a or b reach a higher compression within tol, backed at that target by a paired test?

    The pruner with the higher selected target leads; it wins only if, at that target, its test
    accuracy is higher than the other's at 5% (paired by seed). Same target, no runs: undecided.
    """
    pa, pb = s.best[a][tol], s.best[b][tol]
    if pa is None and pb is None:
        return Versus(None, f"neither has a point within {tol} pts: {TIE}")
    if pa is not None and pb is not None and pa.key == pb.key:
        return Versus(None, f"both reach {pa.key:g}x, the same compression; their accuracies there are "
                            "compared per target below")
    lead, other = (a, b) if pb is None or (pa is not None and pa.key > pb.key) else (b, a)
    top = s.best[lead][tol]
    theirs = point_at(s.points[other], top.key)
    if theirs is None:
        return Versus(None, f"`{other}` has no runs at {top.key:g}x, so no interval backs `{lead}`'s "
                            f"higher compression: {TIE}")
    said = (f"at {top.key:g}x `{lead}` {top.test.cell()} vs `{other}` {theirs.test.cell()}, difference "
            f"{signed(difference(top, theirs))}")
    if decide(top, theirs) > 0:
        return Versus(lead, f"{said}: `{lead}` better at 5%, `{lead}` wins")
    return Versus(None, f"{said}: {TIE}")


def dominance(s: Study, focus: str = "admm", tol: float = 0.5) -> tuple[bool | None, list[str]]:
    """Whether ``focus`` beats every other pruner at tol by `versus`, with one backed line per rival."""
    if focus not in s.best:
        return None, [f"The `{focus}` pruner is absent from these results, so dominance cannot be assessed."]
    others = [p for p in s.pruners if p != focus]
    if not others:
        return None, [f"Only the `{focus}` pruner is present; there is no other pruner to compare against."]
    ours = s.best[focus][tol]
    outcomes = {o: versus(s, focus, o, tol) for o in others}
    lines = []
    for o in others:
        theirs = s.best[o][tol]
        ratio = (f"{comp(ours)} / {comp(theirs)} = {ours.compression / theirs.compression:.2f}x" if ours and theirs
                 else f"{focus} {comp(ours)}, {o} {comp(theirs)} (no ratio)")
        lines.append(f"- vs `{o}`: {ratio}; {outcomes[o].why}.")
    wins = [o for o in others if outcomes[o].winner == focus]
    losses = [o for o in others if outcomes[o].winner == o]
    ties = [o for o in others if outcomes[o].winner is None]
    dominates = len(wins) == len(others)
    if dominates:
        head = (f"At {tol} points tolerance `{focus}` dominates: against every other pruner it reaches a higher "
                "compression, and at that target its test accuracy is higher at 5%, paired by seed.")
    else:
        parts = [f"beats {_names(wins)}" if wins else "", f"is undecided against {_names(ties)}" if ties else "",
                 f"is beaten by {_names(losses)}" if losses else ""]
        head = f"At {tol} points tolerance `{focus}` does not dominate: it " + "; it ".join(p for p in parts if p) + "."
    return dominates, [head, "", *lines]


def _names(pruners: list[str]) -> str:
    return ", ".join(f"`{p}`" for p in pruners)


def target_verdict(at: dict[str, Point], better: Callable[[str, str], bool] | None = None) -> str:
    """At one target: the most accurate pruner wins only if it is better than every other at 5%
    (``better(leader, rival)``; by default one paired test, unadjusted: pass the Holm-adjusted
    outcomes where several targets are judged)."""
    if len(at) == 1:
        return f"only {next(iter(at))}"
    better = better or (lambda x, y: decide(at[x], at[y]) > 0)
    leader = max(at, key=lambda p: at[p].test.mean)
    tied = [p for p in sorted(at) if p != leader and not better(leader, p)]
    if not tied:
        return f"{leader} wins"
    below = [p for p in sorted(at) if p != leader and p not in tied]
    return f"undecided between {', '.join([leader, *tied])}" + (f"; {leader} above {', '.join(below)}" if below else "")
