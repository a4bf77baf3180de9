"""Regenerate README.md's results section from the summaries and benchmark files in results/.

Every figure in that section comes from a file the code wrote; paper figures are labelled.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from aggregate import TOLERANCES, best_within, load_runs, operating_points  # noqa: E402

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x}x"


def _link(path: Path, base: Path) -> str:
    """A link target relative to the README's folder."""
    return path.relative_to(base).as_posix()


def results_section(results: Path, base: Path = ROOT) -> str:
    lines = ["| experiment | data | seed | dense top-1 | final top-1 | change | compression | "
             "paper: compression | paper: top-1 | stage seconds (pretrain / prune / retrain) | wall s of the run |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for path in sorted(results.glob("*/*/summary.json")):
        s = json.loads(path.read_text())
        paper = s.get("paper") or {}
        secs = " / ".join(f"{v:.0f}" for v in s["stage_seconds"].values())
        delta = 100 * (s["final_acc"] - s["dense_acc"])
        reused = any((s.get("stage_cached") or {}).values())
        wall = f"{s['wall_seconds']:.0f}" + (" (stages reused)" if reused else "")
        lines.append(
            f"| [{s['experiment']}]({_link(path.parent, base)}/table.md) | {s['data']} | "
            f"{s['seed']} | {_pct(s['dense_acc'])} | {_pct(s['final_acc'])} | {delta:+.2f} pts | "
            f"{s['compression']:.2f}x | {_times(paper.get('compression'))} | {_pct(paper.get('top1'))} | "
            f"{secs} | {wall} |")
    sweeps = sorted(results.glob("*_sweep/report.md"))
    if sweeps:
        lines += ["", "Sweeps (accuracy vs compression per pruner, equal budgets): "
                  + ", ".join(f"[{p.parent.name}]({_link(p, base)}) "
                              f"([plot]({_link(p.parent / 'accuracy_vs_compression.png', base)}))"
                              for p in sweeps) + "."]
    extra = [(f, label) for f, label in ((results / "speedup.md", "measured inference speedup of structured pruning"),
                                         (results / "alexnet_weights.md", "AlexNet weight counts vs the 21x preset"))
             if f.is_file()]
    if extra:
        lines += ["", "Reports: " + ", ".join(f"[{f.name}]({_link(f, base)}) ({label})"
                                           for f, label in extra) + "."]
    bench = sorted((results / "benchmarks").glob("throughput_*.json"))
    if bench:
        lines += ["", "| benchmark | suite / plain PyTorch throughput | ADMM / dense epoch time |",
                  "|---|---:|---:|"]
        for path in bench:
            b = json.loads(path.read_text())
            lines.append(f"| [{b['model']} on {b['data']}, batch {b['batch_size']}]"
                         f"({_link(path.with_suffix('.md'), base)}) | "
                         f"{b['throughput_ratio_median']:.3f} | {b['admm_vs_dense_epoch_time_median']:.3f} |")
    return "\n".join(lines)


def _paper_points(folder: Path) -> list[dict]:
    model, kind = folder.name.split("_")[0], folder.name.rsplit("_", 1)[-1]
    paths = [ROOT / "conf" / "paper" / f"{model}_{kind}.json", ROOT / "conf" / "paper" / f"{model}.json"]
    return next((json.loads(p.read_text()) for p in paths if p.is_file()), [])


def operating_points_section(results: Path, base: Path = ROOT) -> str:
    """Best compression per model and method within 0.5 / 1.0 points of dense, from every sweep,
    progressive and per-layer-profile folder, with the paper's figure for that method beside it."""
    lines = ["| model | data | method | seeds | dense top-1 | best within 0.5 pts | best within 1.0 pts | "
             "paper (reference) | source |", "|---|---|---|---:|---:|---:|---:|---|---|"]
    for folder in sorted(p for kind in ("sweep", "progressive", "profile") for p in results.glob(f"*_{kind}")):
        runs = load_runs(folder)
        if not runs:
            continue
        dense = statistics.fmean(r["dense_acc"] for r in runs)
        paper = _paper_points(folder)
        for pruner, pts in sorted(operating_points(runs).items()):
            best = best_within(pts, dense)
            seeds = len({r["seed"] for pt in pts for r in pt.runs})
            ref = "; ".join(p["label"] for p in paper if p.get("pruner") == pruner)
            cells = [f"{best[t]:.1f}x" if best[t] else "none" for t in TOLERANCES if t in (0.5, 1.0)]
            report = _link(folder / "report.md", base)
            lines.append(f"| {runs[0]['model']} | {runs[0]['data']} | {pruner} | {seeds} | {100 * dense:.2f}% | "
                         f"{cells[0]} | {cells[1]} | {ref or '-'} | [{folder.name}]({report}) |")
    return "\n".join(lines)


def render(results: Path, base: Path = ROOT) -> str:
    """The whole generated block, markers included."""
    return (f"{START}\n<!-- generated by `make readme` from results/; do not edit by hand -->\n"
            f"{results_section(results, base)}\n\nBest operating points (mean final top-1 over seeds within "
            f"the tolerance of the dense mean):\n\n{operating_points_section(results, base)}\n{END}")


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--results", type=Path, default=ROOT / "results")
    args = ap.parse_args(argv)
    text = args.readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{args.readme}: no {START} ... {END} block to replace")
    body = render(args.results, args.readme.parent)
    args.readme.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: body, text, flags=re.S))
    print(body)
    return body


if __name__ == "__main__":
    main()
