"""report.md of a tuned comparison (study=compare): per budget, each pruner's chosen setting on fresh
seeds, its frontier (chosen on validation), the paired differences between pruners and against each
run's own dense model with their outcomes (better, equivalent, undecided; one Holm family over both
tests at every target), and the verdict on the paper's claim (ADMM reaches a higher compression than
Han at no loss).

Usage: python -m admm_pruning.analysis.budgets STUDY_DIR [--paper STUDY] [--wandb]
(STUDY_DIR holds tuning/ and runs/, e.g. results/lenet5_mnist10k_compare).
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from admm_pruning.analysis.aggregate import log_to_wandb
from admm_pruning.analysis.budget_plot import plot_changes
from admm_pruning.analysis.claims import (
    HOLM,
    change_table,
    compare_across,
    comparison_table,
    frontier,
    frontier_table,
    per_target_table,
)
from admm_pruning.analysis.paired import MARGIN as NO_LOSS
from admm_pruning.analysis.paired import Difference
from admm_pruning.analysis.paper import study_points
from admm_pruning.analysis.report import made_on, tolerance_table
from admm_pruning.analysis.runs import Point, Study, load_runs, study
from admm_pruning.analysis.verdicts import signed


def by_budget(runs: list[dict]) -> dict[int, Study]:
    """One study per budget (epochs after the dense model), each with its own points and choices."""
    groups: dict[int, list[dict]] = defaultdict(list)
    for r in runs:
        groups[round(r["budget_epochs"])].append(r)
    return {b: study(rs) for b, rs in sorted(groups.items())}


def claim_verdict(s: Study, budget: int) -> tuple[str, str | None]:
    """The paper's claim at one budget: does ADMM reach a higher compression than Han within NO_LOSS
    of dense (the frontier, chosen on validation), and is it better than Han there, paired by seed
    (Holm-adjusted over the comparison's targets)? Returns the sentence and the winner (None: undecided)."""
    if "admm" not in s.best or "han" not in s.best:
        return f"At {budget} epochs: admm or han is missing, no verdict.", None
    (fa, ta), (fh, th) = frontier(s, "admm"), frontier(s, "han")
    at = {k: (d, o) for k, d, o in compare_across(s, "admm", "han")}
    lead = "admm" if fa and (fh is None or fa.key > fh.key) else "han" if fh and (fa is None or fh.key > fa.key) \
        else None
    top = {"admm": fa, "han": fh}.get(lead)
    winner = lead if top is not None and at.get(top.key, (None, ""))[1].startswith(f"{lead} better") else None
    if winner == "admm":
        head = "the claim holds"
    elif winner == "han":
        head = "the claim fails: Han reaches the higher compression"
    else:
        head = "undecided"
    reach = (f"within {100 * NO_LOSS:g} pt of dense on validation, admm reaches {_reach(fa, ta)} "
             f"and han {_reach(fh, th)}")
    per_target = "; ".join(f"{k:g}x: {o}, {signed(d, o)}" for k, (d, o) in at.items())
    return f"At {budget} epochs, {head}: {reach}; admm - han per target ({HOLM}): {per_target}.", winner


def _reach(p: Point | None, test: Difference | None) -> str:
    return "no target" if p is None or test is None else f"{p.key:g}x (test change {signed(test)})"


def budget_table(studies: dict[int, Study], tol: float) -> list[str]:
    """Per pruner and budget, the highest target within tol of dense, chosen on validation."""
    pruners = sorted({p for s in studies.values() for p in s.pruners})
    lines = ["| pruner | " + " | ".join(f"{b} epochs" for b in studies) + " |", "|---|" + "---:|" * len(studies)]
    for p in pruners:
        cells = []
        for s in studies.values():
            pt = s.best.get(p, {}).get(tol)
            cells.append("-" if p not in s.best else "none" if pt is None else f"{pt.key:g}x")
        lines.append(f"| {p} | " + " | ".join(cells) + " |")
    return lines


def settings_table(runs: list[dict]) -> list[str]:
    """The setting each pruner ran, per budget and the tuning target it was chosen at."""
    rows = sorted({(round(r["budget_epochs"]), r["pruner"], r["trial"]["chosen_at"] or 0.0, r["trial"]["index"],
                    ", ".join(f"{k}={v}" for k, v in r["trial"]["overrides"].items()))
                   for r in runs if r.get("trial")})
    return ["| budget (epochs) | pruner | chosen at | trial | setting |", "|---:|---|---:|---:|---|",
            *[f"| {b} | {p} | {at:g}x | {i} | {text} |" for b, p, at, i, text in rows]]


def cost_lines(runs: list[dict]) -> list[str]:
    """CPU-hours measured: each stage once (stages are shared between runs; a reused stage's metrics
    keep the seconds it took to compute), times the threads of the run that computed it. A stage
    that every run found cached was computed before these summaries were written (by a run they
    replaced, or another study), with threads not recorded: its seconds are said apart, as wall time."""
    computed: dict[str, float] = {}
    for r in runs:
        threads = (r.get("provenance") or {}).get("threads") or 1
        for name, d in r.get("stage_dirs", {}).items():
            if not r["stage_cached"][name]:
                computed.setdefault(d, r["stage_seconds"][name] * threads)
    reused = {d: r["stage_seconds"][name] for r in runs for name, d in r.get("stage_dirs", {}).items()
              if d not in computed}
    done, found = sum(computed.values()) / 3600, sum(reused.values()) / 3600
    line = (f"Measured compute of these {len(runs)} runs: {done:.2f} CPU-hours for the {len(computed)} distinct "
            "stages they computed (each counted once, seconds times the torch threads of the run that computed it)")
    if reused:
        line += (f", and {found:.2f} hours of wall time for {len(reused)} stage(s) every run found cached (computed "
                 "before these summaries, by an earlier run or another study, threads not recorded): at least "
                 f"{done + found:.2f} CPU-hours in all")
    return [line + "."]


def where_tuned(runs: list[dict], tuning: list[dict]) -> str:
    """The tuning behind the runs: this study's own trials, or another study's choices."""
    if tuning:
        n_trials = sorted({r["trial"]["of"] for r in tuning if r.get("trial")})
        return (f"{len(tuning)} tuning runs (seed 0; {', '.join(map(str, n_trials)) or 'no'} trials per pruner, "
                "budget and tuning target: `tuning/tuning.md`)")
    studies = [r.get("config", {}).get("study") or {} for r in runs]
    source = sorted({s["chosen_from"] for s in studies if s.get("chosen_from")})
    if not source:
        return "no tuning runs"
    n_trials = sorted({s["trials"] for s in studies if s.get("trials")})
    return (f"no tuning runs of its own: the settings were chosen by the tuning of "
            f"{', '.join(f'`results/{x}`' for x in source)} ({', '.join(map(str, n_trials))} trials per pruner, "
            f"budget and tuning target: `results/{source[0]}/tuning/tuning.md`)")


def render(study_dir: Path, runs: list[dict], tuning: list[dict], paper: list[dict]) -> tuple[str, dict]:
    """The whole report, and the verdict per budget."""
    studies = by_budget(runs)
    verdicts = {b: claim_verdict(s, b) for b, s in studies.items()}
    models = ", ".join(sorted({r["model"] for r in runs}))
    data = ", ".join(sorted({r["data"] for r in runs}))
    seeds = ", ".join(str(x) for x in sorted({r["seed"] for r in runs}))
    budgets = " and ".join(f"{b}" for b in studies)
    out = [f"# {models} on {data}: tuned comparison, budgets of {budgets} epochs after the dense model", "",
           "Every comparison is paired by seed: the pruners of one seed start from that seed's dense model, so "
           "the per-seed differences decide (better, equivalent within ±0.1 pt, or undecided), "
           f"{HOLM}. Intervals are Student t (scipy), 95% unless said.", "",
           f"Read `{study_dir}`: {len(runs)} reporting runs (seeds {seeds}) and {where_tuned(runs, tuning)}. "
           "Each pruner ran the setting its own tuning chose on validation; test was read once, here.", "",
           "Made on:", "", *made_on([*runs, *tuning]), "",
           *cost_lines([*runs, *tuning]), "", "## The paper's claim: ADMM reaches a higher compression than Han "
           f"at no loss (within {100 * NO_LOSS:g} pt)", "", *[f"- {v[0]}" for v in verdicts.values()], "",
           "## Highest compression within 0.1 / 0.5 / 1.0 pt of dense, by budget (chosen on validation)", ""]
    for tol in (0.1, 0.5, 1.0):
        out += [f"Within {tol} pt:", "", *budget_table(studies, tol), ""]
    out += ["## The settings tuning chose", "", "Each reporting target used the choice made at the tuning target "
            "nearest to it (log2).", "", *settings_table(runs), ""]
    for b, s in studies.items():
        out += [f"## Budget: {b} epochs after the dense model", "", *frontier_table(s), "",
                *comparison_table(s, "admm"), "", *change_table(s), "",
                "Highest compression whose mean validation top-1 stays within each tolerance of the dense mean:", "",
                *tolerance_table(s), "",
                *per_target_table(s), ""]
    if paper:
        out += ["## Paper reference (quoted, not measured)", "",
                *[f"- {p['label']}: {p['compression']}x" + (", no loss" if p.get("no_loss") else "") for p in paper],
                ""]
    return "\n".join(out), {b: v[1] for b, v in verdicts.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path)
    parser.add_argument("--paper", metavar="STUDY", default=None, help="studies.STUDY of conf/papers/figures.yaml")
    parser.add_argument("--wandb", action="store_true", help="also log the table and chart to W&B (warn-only)")
    args = parser.parse_args(argv)
    runs, tuning = load_runs(args.study_dir / "runs"), load_runs(args.study_dir / "tuning")
    if not runs:
        print(f"error: no summary.json found under {args.study_dir / 'runs'}", file=sys.stderr)
        return 2
    paper = study_points(args.paper) if args.paper else []
    text, _ = render(args.study_dir, runs, tuning, paper)
    plot = args.study_dir / "accuracy_change_vs_compression.png"
    plot_changes(by_budget(runs), paper, plot)
    (args.study_dir / "report.md").write_text(text)
    if args.wandb:
        labelled = [{**r, "pruner": f"{r['pruner']} ({round(r['budget_epochs'])} ep)"} for r in runs]
        log_to_wandb(labelled, args.study_dir.name, f"{args.study_dir.name}: tuned comparison", plot)
    print(args.study_dir / "report.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
