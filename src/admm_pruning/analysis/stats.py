"""Mean, spread and 95% interval of a handful of seeds, and the rule that turns two of them into a verdict.

With two or three seeds per setting, a difference of a few tenths of a point is often noise; these
helpers make every comparison in the reports say so instead of crowning whichever mean is higher.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

# Student t quantile t_{0.975} for 1..30 degrees of freedom (standard tables; 1.96 beyond, the normal limit)
T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228,
        2.201, 2.179, 2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086,
        2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)
Z975 = 1.96


def t975(df: int) -> float:
    """Two-sided 95% Student t quantile, from the table so the package needs no scipy."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return T975[df - 1] if df <= len(T975) else Z975


@dataclass(frozen=True)
class Estimate:
    """Mean, sample standard deviation and 95% interval of the mean over n values (fractions, not %)."""

    mean: float
    sd: float
    n: int

    @property
    def half_width(self) -> float | None:
        """None for n = 1: one seed says nothing about the spread, so no interval is claimed."""
        return t975(self.n - 1) * self.sd / math.sqrt(self.n) if self.n > 1 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        h = self.half_width
        return None if h is None else (self.mean - h, self.mean + h)

    def pct(self) -> str:
        """'98.70 ± 0.03%': the form every table uses."""
        return f"{100 * self.mean:.2f} ± {100 * self.sd:.2f}%"

    def ci_pct(self) -> str:
        ci = self.interval
        return "no interval (n=1)" if ci is None else f"{100 * ci[0]:.2f} to {100 * ci[1]:.2f}%"

    def cell(self) -> str:
        """Mean ± sd with n and the interval, for one table cell."""
        ci = self.interval
        spread = "" if ci is None else f", CI {100 * ci[0]:.2f} to {100 * ci[1]:.2f}"
        return f"{self.pct()} (n={self.n}{spread})"


def estimate(values: Iterable[float]) -> Estimate:
    """Summarise the per-seed values of one setting; the sample sd (n - 1) feeds the t interval."""
    vals = list(values)
    if not vals:
        raise ValueError("no values to estimate")
    sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
    return Estimate(statistics.fmean(vals), sd, len(vals))


def separated(a: Estimate, b: Estimate) -> int:
    """+1 when a's 95% interval lies wholly above b's, -1 when wholly below, 0 for a tie within noise
    (the intervals overlap or touch, or either has n < 2 and so no interval)."""
    ia, ib = a.interval, b.interval
    if ia is None or ib is None:
        return 0
    if ia[0] > ib[1]:
        return 1
    if ib[0] > ia[1]:
        return -1
    return 0
