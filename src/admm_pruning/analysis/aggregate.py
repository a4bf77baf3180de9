"""Aggregate run summaries into an accuracy-vs-compression curve, a plot and a report.

Usage: python -m admm_pruning.analysis.aggregate RESULTS_DIR [--out OUT_DIR] [--paper STUDY | --paper-json FILE]
[--focus PRUNER] [--wandb]

--paper STUDY draws the reference points of ``studies.STUDY`` in conf/papers/figures.yaml, the one
file of paper figures (e.g. --paper lenet5 for a LeNet-5 sweep, lenet5_progressive, lenet5_profile);
--paper-json FILE takes a JSON list of points in the same form instead.

Every number written comes from the summary.json files under RESULTS_DIR; paper points are only
drawn and listed as labelled references, never mixed into our figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from admm_pruning.analysis.curve import plot_curve, write_curve
from admm_pruning.analysis.paper import study_points
from admm_pruning.analysis.report import render, title_of
from admm_pruning.analysis.runs import NoSummariesError, load_study

WANDB_COLUMNS = ["pruner", "seed", "target_compression", "compression", "final_acc", "dense_acc", "pruned_acc",
                 "final_val_acc", "dense_val_acc"]


def log_to_wandb(runs: list[dict], group: str, title: str, plot: Path | None = None,
                 project: str = "admm-pruning") -> None:
    """Log the study to a `report` run of its group. Where W&B cannot start or log, only a warning
    on stderr: the files are written already, and a W&B that is down must not fail a make target."""
    try:
        _log_report(runs, group, title, plot, project)
    except Exception as exc:  # noqa: BLE001 - whatever W&B raises
        print(f"warning: W&B unavailable, the curve was not logged ({type(exc).__name__}: {exc})", file=sys.stderr)


def _log_report(runs: list[dict], group: str, title: str, plot: Path | None, project: str) -> None:
    """The study's table (wandb.Table, one row per run) and its accuracy-vs-compression chart on a
    log axis: W&B's line plot has none, so the aggregator's log2 figure goes as an image, and the
    line plot is drawn over log2 of the compression."""
    import wandb

    from admm_pruning.training.loggers import wandb_mode

    mode = wandb_mode("auto")
    if mode == "disabled":
        return
    rows = [[*(r.get(c) for c in WANDB_COLUMNS), math.log2(r["compression"])] for r in runs]
    table = wandb.Table(columns=[*WANDB_COLUMNS, "log2_compression"], data=rows)
    root = Path("artifacts/wandb")
    root.mkdir(parents=True, exist_ok=True)
    run = wandb.init(project=project, group=group, job_type="report", name=f"{group}-report", mode=mode,
                     dir=str(root), config={"study": group, "runs": len(runs)}, reinit="create_new",
                     settings=wandb.Settings(init_timeout=30, silent=True))
    try:
        payload = {"curve": table, "accuracy_vs_compression": wandb.plot.line(
            table, "log2_compression", "final_acc", stroke="pruner", title=f"{title} (x: log2 compression)")}
        if plot is not None:
            payload["accuracy_vs_compression_plot"] = wandb.Image(str(plot), caption=title)
        run.log(payload)
    finally:
        run.finish()


def aggregate(results_dir: Path, out_dir: Path, paper_points: list[dict] | None = None,
              focus: str = "admm") -> dict:
    """Write curve.csv, accuracy_vs_compression.png and report.md for the runs under results_dir."""
    s = load_study(results_dir)
    paper_points = paper_points or []
    out_dir.mkdir(parents=True, exist_ok=True)
    title = title_of(s)
    paths = {"curve": out_dir / "curve.csv", "plot": out_dir / "accuracy_vs_compression.png",
             "report": out_dir / "report.md"}
    write_curve(s, paths["curve"])
    plot_curve(s, paper_points, title, paths["plot"])
    text, dominates = render(s, results_dir, paper_points, focus)
    paths["report"].write_text(text)
    return {"runs": len(s.runs), "pruners": s.pruners, "seeds": sorted({r["seed"] for r in s.runs}),
            "dense_mean": s.dense_test, "basis": s.basis, "best": s.best, "dominates_at_0_5": dominates,
            "paths": paths, "title": title, "table_runs": s.runs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: RESULTS_DIR)")
    papers = parser.add_mutually_exclusive_group()
    papers.add_argument("--paper", metavar="STUDY", default=None,
                        help="paper points of studies.STUDY in conf/papers/figures.yaml")
    papers.add_argument("--paper-json", type=Path, default=None, help="JSON list of paper points")
    parser.add_argument("--focus", default="admm", help="the pruner whose dominance the report assesses")
    parser.add_argument("--wandb", action="store_true",
                        help="also log the curve to W&B (offline unless set up; a W&B failure only warns)")
    args = parser.parse_args(argv)
    paper = json.loads(args.paper_json.read_text()) if args.paper_json else None
    if args.paper:
        try:
            paper = study_points(args.paper)
        except KeyError as exc:
            print(f"error: {exc.args[0]}", file=sys.stderr)
            return 2
    try:
        result = aggregate(args.results_dir, args.out or args.results_dir, paper, args.focus)
    except NoSummariesError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in result["paths"].values():
        print(path)
    if args.wandb:
        log_to_wandb(result["table_runs"], args.results_dir.name, result["title"], result["paths"]["plot"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
