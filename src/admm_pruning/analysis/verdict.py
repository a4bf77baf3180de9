"""results/verdict.md: each claim of the papers, its verdict per network, budget and target.

Usage: python -m admm_pruning.analysis.verdict [--results results] [--out results/verdict.md]
(``make verdict``). It reads every tuned comparison (``results/*_compare*/runs``), full MNIST (the
papers' protocol) first, and judges each claim with the paired statistics of analysis/claims.py:
better, equivalent within ±0.1 pt, or undecided, Holm-adjusted over both tests at every target of
one claim, network and budget. Every line links to the study whose report holds the detail.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from admm_pruning.analysis.budgets import by_budget
from admm_pruning.analysis.claims import HOLM, against_dense, compare_across, frontier
from admm_pruning.analysis.paired import Difference
from admm_pruning.analysis.paper import study_points
from admm_pruning.analysis.report import made_on
from admm_pruning.analysis.runs import Study, load_runs
from admm_pruning.analysis.verdicts import UNDECIDED, signed

ROOT = Path(__file__).resolve().parents[3]
PROTOCOL_ORDER = {"mnist": 0, "mnist10k": 1}
PROTOCOL = {"mnist": "full MNIST (the papers' protocol: 55k / 5k / 10k)", "mnist10k": "mnist10k (stand-in: 7k / 3k)"}
HEADER = ("| network | data | budget | target | verdict | paired difference (n, 95% CI; the 90% CI too on "
          "equivalence rows) | study |")
RULE = "|---|---|---:|---:|---|---|---|"


@dataclass(frozen=True)
class Claim:
    """A claim of the papers: ``a`` against ``b`` at every target, or ``a`` against its dense models
    at the paper's no-loss compression (``b`` None)."""

    title: str
    short: str
    a: str
    b: str | None


CLAIMS = (
    Claim("ADMM reaches a higher compression than Han et al. at no accuracy loss (Zhang et al. 2018: LeNet-5 "
          "71.2x and LeNet-300-100 22.9x, against Han's 12x): ADMM minus Han, per target",
          "ADMM vs Han (admm - han)", "admm", "han"),
    Claim("ADMM beats one-shot magnitude pruning at equal budget: ADMM minus one-shot, per target",
          "ADMM vs one-shot (admm - oneshot)", "admm", "oneshot"),
    Claim("ADMM loses no accuracy at the paper's compression: ADMM minus its own dense model (no loss: "
          "equivalent within ±0.1 pt, or above)", "ADMM no loss at the paper's compression (admm - dense)",
          "admm", None),
)


@dataclass(frozen=True)
class StudyRuns:
    name: str
    link: str
    model: str
    data: str
    studies: dict[int, Study]
    runs: list[dict]


def load_studies(results: Path, base: Path) -> list[StudyRuns]:
    out = []
    for folder in sorted(results.glob("*_compare*")):
        runs = load_runs(folder / "runs") if (folder / "runs").is_dir() else []
        if runs:
            out.append(StudyRuns(folder.name, Path(os.path.relpath(folder / "report.md", base)).as_posix(),
                                 runs[0]["model"], runs[0]["data"], by_budget(runs), runs))
    return sorted(out, key=lambda st: (PROTOCOL_ORDER.get(st.data, 9), st.model))


def claim_found(claim: Claim, st: StudyRuns) -> list[tuple[int, float, Difference, str]]:
    """(budget, target, difference, outcome) for one claim in one study, one Holm family per budget."""
    found = []
    paper = [p["compression"] for p in study_points(st.model) if p.get("pruner") == claim.a and p.get("no_loss")]
    for budget, s in st.studies.items():
        if claim.b is None:
            rows = against_dense(s, claim.a, paper)  # the paper's targets only: they are the family
        elif {claim.a, claim.b} <= set(s.points):
            rows = compare_across(s, claim.a, claim.b)
        else:
            rows = []
        found += [(budget, k, d, o) for k, d, o in rows]
    return found


def claim_rows(claim: Claim, st: StudyRuns) -> list[str]:
    """One row per budget and target of one study."""
    return [f"| {st.model} | {st.data} | {budget} epochs | {k:g}x | **{o}** | {signed(d, o)} | [{st.name}]({st.link}) |"
            for budget, k, d, o in claim_found(claim, st)]


def reading(studies: list[StudyRuns]) -> str:
    """One sentence read off the rows: per claim, how many rows came out which way, naming the
    rows of an outcome when there are at most two of them."""
    parts = []
    for claim in CLAIMS:
        found = [(st.model, b, k, o.split(" (")[0])
                 for st in studies for b, k, _, o in claim_found(claim, st)]
        groups: dict[str, list[str]] = {}
        for model, b, k, o in found:
            groups.setdefault(o, []).append(f"{model} {k:g}x, {b} epochs")
        said = [f"{o} at {len(where)}" + (f" ({'; '.join(where)})" if len(where) <= 2 else "")
                for o, where in sorted(groups.items(), key=lambda g: g[0] == UNDECIDED)]
        rows = f"{len(found)} row{'s' * (len(found) != 1)}"
        if found:
            parts.append(f"{claim.short.split(' (')[0]} ({rows}): " + ", ".join(said))
    return "Read from these rows: " + "; ".join(parts) + "." if parts else ""


def frontier_lines(st: StudyRuns) -> list[str]:
    """Per budget, each pruner's highest target within 0.1 pt of dense on validation."""
    lines = []
    for budget, s in st.studies.items():
        parts = []
        for p in s.pruners:
            pt, test = frontier(s, p)
            parts.append(f"{p} {pt.key:g}x (test change {signed(test)})" if pt else f"{p} none")
        lines.append(f"- {st.model}, {st.data}, {budget} epochs: " + "; ".join(parts) + ".")
    return lines


def render(results: Path, base: Path = ROOT) -> str:
    studies = load_studies(results, base)
    runs = [r for st in studies for r in st.runs]
    out = ["# Verdicts on the papers' claims", "",
           "Generated by `make verdict` from the tuned comparisons in `results/` (each pruner tuned on "
           "validation with equal trials on mnist10k, then run on fresh seeds; test read once). Every verdict is "
           "paired by seed: the pruners of one seed start from that seed's dense model, and the per-seed "
           "differences decide: **better** (the t test of no difference at 5%; alone, the 95% t-interval "
           "excludes 0), **equivalent within ±0.1 pt** (two one-sided tests at 5%; alone, the 90% interval lies "
           "inside), or **undecided**, with the number of seeds the "
           f"observed spread says would decide; {HOLM} (the rows of one claim, network and budget: the "
           "difference and the equivalence test at each target are one family, and since at most one of a "
           "target's two nulls can be true, no multiplier exceeds the number of targets, Shaffer's bound; no "
           "adjustment across claims, networks or budgets), so a row can read undecided beside a 95% interval "
           "that excludes 0; the intervals shown are unadjusted. "
           "The no-loss claim is tested at the paper's compression alone. Full MNIST is the papers' protocol; "
           "mnist10k rows are the quick stand-in.", "",
           "Made on:", "", *made_on(runs), ""]
    for claim in CLAIMS:
        rows = [row for st in studies for row in claim_rows(claim, st)]
        out += [f"## {claim.title}", "", HEADER, RULE, *(rows or ["| - | - | - | - | no runs yet | - | - |"]), ""]
    out += ["## Frontier: the highest target within 0.1 pt of dense on validation, per pruner", "",
            *[line for st in studies for line in frontier_lines(st)], ""]
    return "\n".join(out)


def readme_table(results: Path, base: Path = ROOT) -> str:
    """The verdict rows on the papers' protocol (full MNIST), for the README: one table and the
    sentence read off it."""
    studies = [st for st in load_studies(results, base) if st.data == "mnist"]
    rows = [f"| {claim.short} |{row[1:]}" for claim in CLAIMS for st in studies
            for row in claim_rows(claim, st)]
    if not rows:
        return "No tuned comparison on full MNIST has been reported yet."
    return "\n".join(["| claim " + HEADER, "|---" + RULE, *rows, "", reading(studies)])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    ap.add_argument("--out", type=Path, default=None, help="default: <results>/verdict.md")
    args = ap.parse_args(argv)
    out = args.out or args.results / "verdict.md"
    out.write_text(render(args.results, out.parent) + "\n")  # links relative to the file's folder
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
