"""Mean, spread and 95% interval of a handful of seeds (one setting's runs).

Verdicts between settings are not read off two of these intervals: they come from the paired
per-seed differences (analysis/paired.py, analysis/verdicts.py).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats


def t975(df: int) -> float:
    """Two-sided 95% Student t quantile (scipy)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return float(stats.t.ppf(0.975, df))


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
