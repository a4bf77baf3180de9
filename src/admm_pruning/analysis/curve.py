"""The accuracy-vs-compression curve as data (curve.csv, one row per run) and as a plot."""

from __future__ import annotations

import csv
from pathlib import Path

from admm_pruning.analysis.runs import Study, group_key

CSV_COLUMNS = ["experiment", "pruner", "model", "data", "seed", "target_compression", "compression", "dense_acc",
               "final_acc", "acc_drop_pts", "dense_val_acc", "final_val_acc", "selected_on",
               "operating_point_within_pts", "budget_epochs", "summary_path"]


def _blank(value: object) -> object:
    return "" if value is None else value


def write_curve(s: Study, path: Path) -> None:
    """One row per run so the curve can be re-plotted or re-analysed without re-reading summaries; each row
    names the split the operating points were chosen on and the tolerances whose choice its point is."""
    chosen: dict[tuple[str, float], list[str]] = {}
    for pruner, by_tol in s.best.items():
        for tol, point in by_tol.items():
            if point is not None:
                chosen.setdefault((pruner, point.key), []).append(str(tol))
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_COLUMNS)
        for r in s.runs:
            drop = round(100 * (r["dense_acc"] - r["final_acc"]), 6)
            writer.writerow([r["experiment"], r["pruner"], r["model"], r["data"], r["seed"],
                             _blank(r.get("target_compression")), r["compression"], r["dense_acc"], r["final_acc"],
                             drop, _blank(r.get("dense_val_acc")), _blank(r.get("final_val_acc")), s.basis.label,
                             ";".join(chosen.get((r["pruner"], group_key(r)), [])), _blank(r.get("budget_epochs")),
                             r["summary_path"]])


def plot_curve(s: Study, paper_points: list[dict], title: str, path: Path) -> None:
    """Final test accuracy (mean ± sd over seeds) vs compression per pruner, with our dense accuracy and the
    paper's points for reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for pruner in s.pruners:
        pts = sorted(s.points[pruner], key=lambda p: p.compression)
        ax.errorbar([p.compression for p in pts], [100 * p.test.mean for p in pts],
                    yerr=[100 * p.test.sd for p in pts], marker="o", capsize=3, label=pruner)
    ax.axhline(100 * s.dense_test, color="gray", linestyle="--", label="dense (ours)")
    markers = ["*", "P", "X", "D", "^", "v"]
    plotted = [p for p in paper_points if p.get("top1") is not None]
    for i, p in enumerate(plotted):
        ax.scatter([p["compression"]], [100 * p["top1"]], marker=markers[i % len(markers)], s=150, zorder=5,
                   color="black", label=f"paper: {p['label']}")
    ax.set_xscale("log", base=2)  # each tick doubles the compression
    ticks = FuncFormatter(lambda x, _: f"{x:g}x")
    ax.xaxis.set_major_formatter(ticks)
    ax.xaxis.set_minor_formatter(ticks)
    ax.set_xlabel("measured compression (total / nonzero weights)")
    ax.set_ylabel("final test top-1 (%), mean ± sd over seeds")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
