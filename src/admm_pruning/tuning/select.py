"""The tuning phase's choice: per pruner, budget and tuning target, the trial with the highest
validation accuracy after retraining (ties go to the lower index). Test accuracy plays no part.

``python -m admm_pruning.tuning.select results/lenet5_mnist10k_compare`` reads
``<study>/tuning/**/summary.json`` and writes ``<study>/tuning/chosen.yaml`` (what ``trial=chosen``
reads) and ``<study>/tuning/tuning.md`` (every trial's score, and the trial count per pruner).
A search that is not complete (a trial missing, a run still to come) is refused, not chosen from.
"""

from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from admm_pruning.analysis.runs import NoSummariesError, load_runs
from admm_pruning.foundations.files import atomic_write

Key = tuple[int, str, float]  # budget epochs, pruner, tuning target


class TuningError(ValueError):
    """A tuning phase that cannot be chosen from: incomplete, or without validation scores."""


def trials_by_point(runs: list[dict]) -> dict[Key, dict[int, dict]]:
    """The tuning runs by (budget, pruner, target), then by trial index."""
    table: dict[Key, dict[int, dict]] = defaultdict(dict)
    for run in runs:
        trial = run.get("trial")
        if not trial:
            raise TuningError(f"{run['summary_path']}: not a tuning trial (no 'trial' in its summary)")
        if run.get("final_val_acc") is None:
            raise TuningError(f"{run['summary_path']}: no validation accuracy to choose on")
        key = (round(run["budget_epochs"]), run["pruner"], float(run["target_compression"]))
        table[key][int(trial["index"])] = run
    return dict(table)


def choose(table: dict[Key, dict[int, dict]]) -> dict[Key, int]:
    """The best trial per point on validation; refuses a point whose search is incomplete, and
    pruners that were given different numbers of trials."""
    counts = {run["trial"]["of"] for trials in table.values() for run in trials.values()}
    if len(counts) != 1:
        raise TuningError(f"search spaces of different sizes {sorted(counts)}: every pruner gets the same number")
    n = counts.pop()
    chosen = {}
    for key, trials in sorted(table.items()):
        missing = sorted(set(range(n)) - set(trials))
        if missing:
            raise TuningError(f"budget {key[0]}, pruner {key[1]}, {key[2]:g}x: trials {missing} of 0..{n - 1} "
                              "have no summary yet; finish the tuning phase (it resumes from its stage cache)")
        chosen[key] = max(sorted(trials), key=lambda i: (trials[i]["final_val_acc"], -i))
    return chosen


def as_yaml(chosen: dict[Key, int]) -> dict[str, dict[str, dict[str, int]]]:
    """{budget: {pruner: {target: trial}}}: the file ``trial=chosen`` reads."""
    out: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(dict))
    for (budget, pruner, target), index in chosen.items():
        out[str(budget)][pruner][f"{target:g}"] = index
    return {b: {p: dict(t) for p, t in ps.items()} for b, ps in out.items()}


def report(table: dict[Key, dict[int, dict]], chosen: dict[Key, int]) -> str:
    """Every trial's validation score with the chosen one marked, and the count per pruner."""
    n = len(next(iter(table.values())))
    pruners = sorted({pruner for _, pruner, _ in table})
    lines = ["# Tuning phase: the choice on validation", "",
             f"Every pruner had {n} trials per budget and tuning target (seed 0); each cell is the validation "
             "top-1 after retraining, **bold** the chosen trial (ties go to the lower index). Test accuracy "
             "was not read.", "",
             "| budget (epochs) | pruner | target | " + " | ".join(f"trial {i}" for i in range(n))
             + " | chosen setting |",
             "|---:|---|---:|" + "---:|" * n + "---|"]
    for key in sorted(table):
        trials, best = table[key], chosen[key]
        cells = [f"**{100 * trials[i]['final_val_acc']:.2f}%**" if i == best
                 else f"{100 * trials[i]['final_val_acc']:.2f}%" for i in range(n)]
        setting = ", ".join(f"{k}={v}" for k, v in trials[best]["trial"]["overrides"].items())
        lines.append(f"| {key[0]} | {key[1]} | {key[2]:g}x | " + " | ".join(cells) + f" | {setting} |")
    lines += ["", "Trials per pruner (all budgets and targets): "
              + ", ".join(f"{p} {n * sum(1 for k in table if k[1] == p)}" for p in pruners) + ".", ""]
    return "\n".join(lines)


def select(study_dir: Path) -> dict[Key, int]:
    """Choose from ``<study_dir>/tuning`` and write chosen.yaml and tuning.md there."""
    tuning = study_dir / "tuning"
    runs = load_runs(tuning)
    if not runs:
        raise NoSummariesError(f"no tuning runs (summary.json) under {tuning}")
    table = trials_by_point(runs)
    chosen = choose(table)
    atomic_write(tuning / "chosen.yaml", lambda p: p.write_text(yaml.safe_dump(as_yaml(chosen), sort_keys=True)))
    atomic_write(tuning / "tuning.md", lambda p: p.write_text(report(table, chosen)))
    return chosen


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study_dir", type=Path, help="the study's results folder, e.g. results/lenet5_mnist10k_compare")
    args = parser.parse_args(argv)
    try:
        chosen = select(args.study_dir)
    except (TuningError, NoSummariesError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"chose {len(chosen)} settings; wrote {args.study_dir / 'tuning' / 'chosen.yaml'} and tuning.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
