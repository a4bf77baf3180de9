"""Run summaries grouped into operating points, and the choice of the best point within each tolerance.

The choice is made on the validation split and only the chosen point's test accuracy is reported, so
the test set is not used to pick what it then scores. Summaries from earlier code carry no validation
accuracy; for those the choice falls back to test, and the basis says so wherever it is shown.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from admm_pruning.analysis.stats import Estimate, estimate

TOLERANCES = (0.1, 0.5, 1.0)  # accuracy points below the dense mean
EPS = 1e-9  # absorbs float round-off when an operating point sits exactly on a tolerance edge
VAL_KEYS = ("dense_val_acc", "final_val_acc")
LEGACY_REASON = "earlier code recorded no validation accuracy"
NO_SPLIT_REASON = "some runs have no validation split"


class NoSummariesError(FileNotFoundError):
    """Raised when a results folder holds no summary.json, so the CLI can exit 2 without masking other errors."""


@dataclass(frozen=True)
class Basis:
    """The split whose accuracy chose the operating points, with the reason when it is not validation."""

    split: str
    reason: str = ""

    @property
    def label(self) -> str:
        return f"{self.split} ({self.reason})" if self.reason else self.split

    @property
    def dense_key(self) -> str:
        return "dense_val_acc" if self.split == "validation" else "dense_acc"

    @property
    def final_key(self) -> str:
        return "final_val_acc" if self.split == "validation" else "final_acc"


@dataclass
class Point:
    """One operating point: a pruner's runs at one compression group, summarised over seeds."""

    pruner: str
    key: float
    runs: list[dict]

    @property
    def compression(self) -> float:
        return statistics.fmean(r["compression"] for r in self.runs)

    @property
    def test(self) -> Estimate:
        """Final test top-1 over seeds: the number reported."""
        return estimate(r["final_acc"] for r in self.runs)

    def selection_acc(self, basis: Basis) -> float:
        """Mean final accuracy on the split that chooses operating points."""
        return statistics.fmean(r[basis.final_key] for r in self.runs)


@dataclass
class Study:
    """Everything the reports need from one results folder: its points, the selection basis and the choices."""

    runs: list[dict]
    points: dict[str, list[Point]]
    basis: Basis
    dense_selection: float  # dense mean on the selection split: the reference the tolerances are measured from
    best: dict[str, dict[float, Point | None]]

    @property
    def pruners(self) -> list[str]:
        return sorted(self.points)

    @property
    def dense_test(self) -> float:
        return statistics.fmean(r["dense_acc"] for r in self.runs)

    @property
    def legacy(self) -> bool:
        """True when earlier code made some runs (their summaries predate the validation keys)."""
        return is_legacy(self.runs)


def load_runs(results_dir: Path) -> list[dict]:
    """Read every summary.json below results_dir, remembering where each came from; a single run's
    variant (``<point>+<overrides>/``) is not one of the study's points. A whole study run with
    overrides keeps its grid's folders: its runs are its points."""
    runs = []
    for path in sorted(results_dir.rglob("summary.json")):
        if "+" in path.parent.name:  # a single run with other settings than the point's (report/destination.py)
            continue
        summary = json.loads(path.read_text())
        summary["summary_path"] = path.relative_to(results_dir).as_posix()
        profile = (summary.get("profile") or {}).get("profile", "preset")
        if profile != "preset":  # a derived per-layer split is a different method: its own curve
            summary["pruner"] = f"{summary['pruner']}+{profile}"
        runs.append(summary)
    return runs


def group_key(run: dict) -> float:
    """Seeds of one setting share a target; without one, measured compressions agree to two significant digits."""
    if run.get("target_compression") is not None:
        return float(run["target_compression"])
    return float(f"{run['compression']:.2g}")


def operating_points(runs: list[dict]) -> dict[str, list[Point]]:
    """Per pruner, its operating points sorted by group key."""
    groups: dict[tuple[str, float], list[dict]] = defaultdict(list)
    for run in runs:
        groups[(run["pruner"], group_key(run))].append(run)
    points: dict[str, list[Point]] = defaultdict(list)
    for (pruner, key), members in sorted(groups.items()):
        points[pruner].append(Point(pruner, key, members))
    return dict(points)


def is_legacy(runs: list[dict]) -> bool:
    """Summaries written before the validation keys existed lack them entirely (a null means no val split)."""
    return any(key not in run for run in runs for key in VAL_KEYS)


def selection_basis(runs: list[dict]) -> Basis:
    """Validation when every run recorded it; otherwise test, named with the reason rather than silently."""
    if is_legacy(runs):
        return Basis("test", LEGACY_REASON)
    if any(run[key] is None for run in runs for key in VAL_KEYS):
        return Basis("test", NO_SPLIT_REASON)
    return Basis("validation")


def best_within(points: list[Point], dense_mean: float, basis: Basis) -> dict[float, Point | None]:
    """Per tolerance, the point of highest mean compression whose mean accuracy on the basis split stays
    within that many points of dense_mean (the dense mean on the same split)."""
    best: dict[float, Point | None] = {}
    for tol in TOLERANCES:
        ok = [p for p in points if p.selection_acc(basis) >= dense_mean - tol / 100 - EPS]
        best[tol] = max(ok, key=lambda p: p.compression) if ok else None
    return best


def study(runs: list[dict]) -> Study:
    """Group runs into points and choose each pruner's best point per tolerance on the selection basis."""
    points = operating_points(runs)
    basis = selection_basis(runs)
    dense = statistics.fmean(r[basis.dense_key] for r in runs)
    return Study(runs, points, basis, dense, {p: best_within(pts, dense, basis) for p, pts in points.items()})


def load_study(results_dir: Path) -> Study:
    """The study of one results folder; an empty folder is an error the CLI reports, not an empty report."""
    runs = load_runs(results_dir)
    if not runs:
        raise NoSummariesError(f"no summary.json found under {results_dir}")
    return study(runs)
