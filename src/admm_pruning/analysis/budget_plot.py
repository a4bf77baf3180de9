"""The comparison's figure: accuracy change against each run's own dense model vs compression, one
panel per budget, with 95% t-interval bands and the papers' no-loss claims marked."""

from __future__ import annotations

from pathlib import Path

from admm_pruning.analysis.runs import Study
from admm_pruning.analysis.stats import estimate


def plot_changes(studies: dict[int, Study], paper: list[dict], path: Path) -> None:
    """Mean change (points) per pruner and target, a line per pruner; the band is the 95% t-interval
    of the mean over n seeds (n in the legend), none where n = 1. Papers' no-loss points sit on the
    zero line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(1, len(studies), figsize=(6.5 * len(studies), 4.8), sharey=True, squeeze=False)
    for ax, (budget, s) in zip(axes[0], studies.items(), strict=True):
        for pruner in s.pruners:
            pts = sorted(s.points[pruner], key=lambda p: p.key)
            changes = [estimate(r["final_acc"] - r["dense_acc"] for r in p.runs) for p in pts]
            ns = sorted({c.n for c in changes})
            x, y = [p.compression for p in pts], [100 * c.mean for c in changes]
            half = [100 * (c.half_width or 0.0) for c in changes]
            (line,) = ax.plot(x, y, marker="o", label=f"{pruner} (n={'/'.join(map(str, ns))})")
            low, high = ([m + sign * h for m, h in zip(y, half, strict=True)] for sign in (-1, 1))
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
        ax.axhline(0.0, color="gray", linestyle="--", label="own dense model")
        for p in (q for q in paper if q.get("no_loss")):
            ax.scatter([p["compression"]], [0.0], marker="*", s=160, color="black", zorder=5)
            ax.annotate(f"paper: {p['label'].split(' (')[0]}", (p["compression"], 0.0), textcoords="offset points",
                        xytext=(0, 8), fontsize=7, ha="center", rotation=20)
        ax.set_xscale("log", base=2)
        ticks = FuncFormatter(lambda x, _: f"{x:g}x")
        ax.xaxis.set_major_formatter(ticks)
        ax.set_title(f"budget: {budget} epochs after the dense model")
        ax.set_xlabel("measured compression (log2 axis)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("test top-1 change vs own dense (pts)\nbands: 95% t-interval of the mean")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
