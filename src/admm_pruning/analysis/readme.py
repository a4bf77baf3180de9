"""Regenerate README.md's results section from the summaries and benchmark files in results/.

Every figure in that section comes from a file the code wrote; paper figures are labelled.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from admm_pruning.analysis.verdict import readme_table

ROOT = Path(__file__).resolve().parents[3]

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}%"


def _times(x: float | None) -> str:
    return "-" if x is None else f"{x}x"


def _link(path: Path, base: Path) -> str:
    """A link target relative to the README's folder."""
    return path.relative_to(base).as_posix()


# How each data set is labelled: the papers' protocol first, the stand-in after it.
PROTOCOLS = {"mnist": "mnist (papers' protocol: 55k / 5k / 10k test)", "mnist10k": "mnist10k (stand-in: 7k / 3k)"}


def _machine(s: dict) -> str:
    """Where a run was made, from its provenance: the GPU, else the CPU's thread count."""
    p = s.get("provenance") or {}
    if p.get("gpu"):
        return p["gpu"].replace("NVIDIA ", "")
    cpu = (p.get("cpu") or "CPU").replace("(R)", "").replace(" Processor", "")
    return f"{cpu}, {p['threads']} thread{'s' * (p['threads'] != 1)}" if p.get("threads") else "-"


def _epochs(s: dict) -> str:
    """The recipe's length as dense + pruning + retraining epochs, so a shortened recipe shows
    beside its original; '-' where a summary lacks them."""
    dense = ((s.get("config") or {}).get("pretrain") or {}).get("epochs")
    parts = (dense, s.get("pruning_epochs"), s.get("retrain_epochs"))
    return "-" if None in parts else " + ".join(f"{p:g}" for p in parts)


def _row(path: Path, s: dict, base: Path) -> str:
    paper = s.get("paper") or {}
    secs = " / ".join(f"{v:.0f}" for v in s["stage_seconds"].values())
    delta = 100 * (s["final_acc"] - s["dense_acc"])
    reused = any((s.get("stage_cached") or {}).values())
    wall = f"{s['wall_seconds']:.0f}" + (" (stages reused)" if reused else "")
    return (f"| [{s['experiment']}]({_link(path.parent, base)}/table.md) | {PROTOCOLS.get(s['data'], s['data'])} | "
            f"{s['seed']} | {_pct(s['dense_acc'])} | {_pct(s['final_acc'])} | {delta:+.2f} pts | "
            f"{s['compression']:.2f}x | {_times(paper.get('compression'))} | {_pct(paper.get('top1'))} | "
            f"{_epochs(s)} | {_machine(s)} | {secs} | {wall} |")


def results_section(results: Path, base: Path = ROOT) -> str:
    """One row per single run, full-MNIST rows first, then links to the study reports and
    benchmark files that exist."""
    lines = ["| experiment | data | seed | dense top-1 | final top-1 | change | compression | "
             "paper: compression | paper: top-1 | epochs (dense + prune + retrain) | made on | "
             "stage seconds (pretrain / prune / retrain) | wall s of the run |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|---|---:|"]
    runs = [(path, json.loads(path.read_text())) for path in sorted(results.glob("*/*/seed*/summary.json"))
            if "+" not in path.parent.name]  # a variant (seed<k>+<overrides>) is not the experiment's row
    order = list(PROTOCOLS)
    runs.sort(key=lambda r: order.index(r[1]["data"]) if r[1]["data"] in order else len(order))
    lines += [_row(path, s, base) for path, s in runs]
    sweeps = sorted(results.glob("*_sweep/report.md"))
    if sweeps:
        lines += ["", "Sweeps (accuracy vs compression per pruner, equal budgets): "
                  + ", ".join(f"[{p.parent.name}]({_link(p, base)}) "
                              f"([plot]({_link(p.parent / 'accuracy_vs_compression.png', base)}))"
                              for p in sweeps) + "."]
    extra = [(f, label) for f, label in ((results / "deploy.md", "onnxruntime CPU inference: dense, masked, shrunk"),
                                         (results / "speedup_mnist.md", "measured inference speedup, full MNIST"),
                                         (results / "speedup.md", "measured inference speedup of structured pruning"),
                                         (results / "alexnet_weights.md", "AlexNet weight counts vs the 21x preset"))
             if f.is_file()]
    if extra:
        lines += ["", "Reports: " + ", ".join(f"[{f.name}]({_link(f, base)}) ({label})"
                                           for f, label in extra) + "."]
    bench = sorted((results / "benchmarks").glob("throughput_*.json"))
    if bench:
        lines += ["", "Medians of interleaved rounds, with the rounds' range in brackets.", "",
                  "| benchmark | suite / plain PyTorch loop (default kernels) | suite / plain loop (same "
                  "kernels) | ADMM / dense epoch time | masked / dense epoch time |", "|---|---:|---:|---:|---:|"]
        for path in bench:
            b = json.loads(path.read_text())
            cells = " | ".join(f"{b['ratio_medians'][k]:.3f} ({min(b['ratios'][k]):.3f}-{max(b['ratios'][k]):.3f})"
                               for k in ("suite_vs_plain", "suite_vs_plain_fast", "admm_vs_dense", "masked_vs_dense"))
            lines.append(f"| [{b['model']} on {b['data']}, batch {b['batch_size']}, {b['epochs']} epoch(s) x "
                         f"{b['rounds']} rounds]({_link(path.with_suffix('.md'), base)}) | {cells} |")
    return "\n".join(lines)


def render(results: Path, base: Path = ROOT) -> str:
    """The whole generated block, markers included."""
    return (f"{START}\n<!-- generated by `make readme` from results/; do not edit by hand -->\n"
            f"{results_section(results, base)}\n\n"
            "Verdicts on the papers' claims, on full MNIST (the papers' protocol), from the tuned comparisons "
            "(each pruner tuned on mnist10k's validation split with equal trials, fresh seeds, test read once), "
            "paired by seed and Holm-adjusted over both tests at every target of each claim, network and budget; "
            "every row, the mnist10k stand-in and each pruner's frontier: [results/verdict.md]"
            f"({_link(results / 'verdict.md', base)}) (`make verdict`):\n\n{readme_table(results, base)}\n{END}")


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
