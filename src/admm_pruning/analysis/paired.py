"""The difference between two pruners, paired by seed, and the verdict it supports.

Every pruner of one seed starts from that seed's dense model, so the per-seed differences
d_s = acc_A(s) - acc_B(s) carry the comparison: their mean, sd and t-interval (df = n - 1)
decide it. Three outcomes, never a "tie" read off two overlapping intervals:

- **A better** (or B better): the 95% interval of the difference excludes 0 (two-sided t test
  at 5%, after Holm's adjustment where one claim is checked at several targets);
- **equivalent within +-margin**: the 90% interval lies inside (-margin, +margin) (two one-sided
  tests at 5% each, TOST; Holm-adjusted likewise);
- **undecided** otherwise, with the number of seeds the observed sd says would decide it.

Runs that do not share their dense models fall back to Welch's unpaired test, and say so.
Accuracies are fractions (0.991); margins too (0.001 = 0.1 pt).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

MARGIN = 0.001  # 0.1 pt: the equivalence margin and the papers' "no loss"
ALPHA = 0.05
MAX_SEEDS = 1000  # the search for the seeds needed stops here


@dataclass(frozen=True)
class Difference:
    """Mean difference A - B with its sd, n and degrees of freedom; ``paired`` or Welch's."""

    mean: float
    sd: float
    n: int
    df: float
    se: float
    paired: bool = True

    def interval(self, level: float = 0.95) -> tuple[float, float] | None:
        if self.n < 2 or math.isnan(self.df):
            return None
        h = stats.t.ppf(0.5 + level / 2, self.df) * self.se
        return self.mean - h, self.mean + h

    def p_difference(self) -> float | None:
        """Two-sided p of "no difference"."""
        if self.n < 2:
            return None
        if self.se == 0:
            return 0.0 if self.mean else 1.0
        return float(2 * stats.t.sf(abs(self.mean) / self.se, self.df))

    def p_equivalence(self, margin: float = MARGIN) -> float | None:
        """TOST p: the larger of the two one-sided p's against -margin and +margin."""
        if self.n < 2:
            return None
        if self.se == 0:
            return 0.0 if abs(self.mean) < margin else 1.0
        lower = stats.t.sf((self.mean + margin) / self.se, self.df)
        upper = stats.t.cdf((self.mean - margin) / self.se, self.df)
        return float(max(lower, upper))


def paired(a: Sequence[float], b: Sequence[float]) -> Difference:
    """Per-seed differences of matched runs (a[i] and b[i] share seed i's dense model)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired values need equal, non-zero lengths, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b, strict=True)]
    n = len(d)
    sd = statistics.stdev(d) if n > 1 else 0.0
    return Difference(statistics.fmean(d), sd, n, n - 1 if n > 1 else math.nan, sd / math.sqrt(n))


def welch(a: Sequence[float], b: Sequence[float]) -> Difference:
    """Unpaired A - B (Welch: unequal variances, Welch-Satterthwaite df); n is the smaller sample
    and sd that of one draw of A - B, sqrt(var_A + var_B)."""
    if len(a) < 2 or len(b) < 2:
        n = min(len(a), len(b))
        mean = statistics.fmean(a) - statistics.fmean(b) if a and b else math.nan
        return Difference(mean, 0.0, n, math.nan, math.nan, paired=False)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1)) if se else math.inf
    sd = math.sqrt(statistics.variance(a) + statistics.variance(b))
    return Difference(statistics.fmean(a) - statistics.fmean(b), sd, min(len(a), len(b)), df, se, paired=False)


def holm(pvalues: Sequence[float | None], at_most: int | None = None) -> list[float | None]:
    """Holm's step-down adjustment of a family of p-values (None stays None): the k-th smallest of
    m is multiplied by m - k + 1, then made monotone and capped at 1. ``at_most`` is Shaffer's
    bound: when no more than that many of the nulls can be true at once, no multiplier exceeds it."""
    ranked = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m, out, running = len(ranked), list(pvalues), 0.0
    for k, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, min(m - k, at_most or m) * p))
        out[i] = running
    return out


def seeds_needed(d: Difference, margin: float = MARGIN, alpha: float = ALPHA) -> int | None:
    """The smallest n at which the observed mean and sd would decide one test at ``alpha`` (a
    difference, or equivalence when |mean| < margin); None when no n would (n < 2, or a mean at
    exactly the margin). For a family of k targets, alpha / k is enough after Holm's adjustment."""
    if d.n < 2 or not math.isfinite(d.df):
        return None
    for n in range(2, MAX_SEEDS + 1):
        se = d.sd / math.sqrt(n)
        if d.mean and abs(d.mean) > stats.t.ppf(1 - alpha / 2, n - 1) * se:
            return n
        if abs(d.mean) + stats.t.ppf(1 - alpha, n - 1) * se < margin:
            return n
    return None


def outcome(d: Difference, a: str, b: str, p_diff: float | None = None, p_equiv: float | None = None,
            margin: float = MARGIN, targets: int = 1) -> str:
    """"<a> better", "<b> better", "equivalent within ±<margin> pt" or "undecided (...)"; the p's
    default to the unadjusted ones (pass Holm-adjusted ones, and the family's ``targets``, for a
    claim checked at several targets)."""
    p_diff = d.p_difference() if p_diff is None else p_diff
    p_equiv = d.p_equivalence(margin) if p_equiv is None else p_equiv
    equivalent = p_equiv is not None and p_equiv < ALPHA
    if p_diff is not None and p_diff < ALPHA:
        return f"{a if d.mean > 0 else b} better" + (f", by less than {100 * margin:g} pt" if equivalent else "")
    if equivalent:
        return f"equivalent within ±{100 * margin:g} pt"
    if d.n < 2:
        return f"undecided (n={d.n}: no spread)"
    alone = seeds_needed(d, margin)
    if targets == 1:
        if alone is not None and alone <= d.n:  # decided alone, but a caller's adjustment took it away
            return "undecided (decided at 5% alone, not after Holm's adjustment)"
        return f"undecided (n={alone} would decide at 5%)" if alone else "undecided (no n in reach would decide)"
    adjusted = seeds_needed(d, margin, ALPHA / targets)
    after = (f"n={adjusted} would decide" if adjusted else "no n in reach would decide") + \
        f" after Holm's adjustment over {targets} targets"
    return f"undecided (decided at 5% alone; {after})" if alone is not None and alone <= d.n else f"undecided ({after})"
