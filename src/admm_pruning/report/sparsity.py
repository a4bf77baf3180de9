"""Sparsity counted from saved weights, summary.json and the paper-style table.

Sparsity definition: over the prunable weights only (conv and linear weights; biases excluded,
as in the papers), compression = total weights / nonzero weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from admm_pruning.foundations.files import atomic_write
from admm_pruning.report.provenance import describe
from admm_pruning.report.storage import storage_table


class SparsityMismatchError(RuntimeError):
    """The saved weights do not have the sparsity their masks claim."""


def count_sparsity(weights: dict[str, torch.Tensor], layers: list[str],
                   masks: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Per-layer total / nonzero / kept fraction and the overall compression.

    With ``masks``, any nonzero weight outside its mask is an error: the claimed sparsity
    must be the real one.
    """
    per_layer, total, nonzero = {}, 0, 0
    for name in layers:
        w = weights[f"{name}.weight"]
        nz = int(torch.count_nonzero(w))
        if masks is not None and name in masks:
            outside = int(torch.count_nonzero(w[~masks[name].to(torch.bool)]))
            if outside:
                raise SparsityMismatchError(
                    f"layer {name}: {outside} nonzero weights outside the saved mask")
        per_layer[name] = {"total": w.numel(), "nonzero": nz, "kept": nz / w.numel()}
        total += w.numel()
        nonzero += nz
    conv = [per_layer[n] for n in layers if weights[f"{n}.weight"].dim() > 2]  # ADAM-ADMM reports these
    conv_compression = (sum(d["total"] for d in conv) / max(sum(d["nonzero"] for d in conv), 1)
                        if conv else None)
    return {"per_layer": per_layer, "total": total, "nonzero": nonzero,
            "compression": total / max(nonzero, 1), "conv_compression": conv_compression}


def _k(n: float) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K" if n >= 1e3 else f"{n:.0f}"


def _num_classes(summary: dict[str, Any]) -> int:
    return int(((summary.get("config") or {}).get("data") or {}).get("num_classes", 10))


def _pct(x: float | None) -> str:
    return f"{100 * x:.2f}%" if x else "-"


def table_rows(summary: dict[str, Any]) -> tuple[list[str], list[list[Any]]]:
    """Rows for W&B: layer, weights, nonzero, kept %, paper kept % (None where not given)."""
    paper = (summary.get("paper") or {}).get("keep") or {}
    cols = ["layer", "weights", "nonzero", "kept_pct", "paper_kept_pct"]
    rows = [[name, d["total"], d["nonzero"], 100 * d["kept"],
             100 * paper[name] if name in paper else None]
            for name, d in summary["per_layer"].items()]
    return cols, rows


def write_table(path: Path, summary: dict[str, Any]) -> None:
    """The per-layer table in the layout of the ADMM paper's Table 2, paper figures beside ours."""
    paper = summary.get("paper") or {}
    pkeep = paper.get("keep") or {}
    lines = [
        f"# {summary['experiment']} on {summary['data']} (seed {summary['seed']}, "
        f"split_seed {summary['split_seed']})",
        "",
        "Weights only (biases excluded); compression = weights / nonzero weights, counted from "
        "the saved final weights. Columns marked *paper* are the published figures, for reference.",
        "",
        "| Layer | Weights | Weights after prune (ours) | Kept % (ours) | Kept % (paper) |",
        "|---|---:|---:|---:|---:|",
    ]
    total = nonzero = 0
    for name, d in summary["per_layer"].items():
        p = f"{100 * pkeep[name]:.1f}%" if name in pkeep else "-"
        lines.append(f"| {name} | {_k(d['total'])} | {_k(d['nonzero'])} | {100 * d['kept']:.2f}% | {p} |")
        total += d["total"]
        nonzero += d["nonzero"]
    pc, pa, pd = paper.get("compression"), paper.get("top1"), paper.get("dense_top1")
    paper_total = f"{100 / pc:.2f}%" if pc else "-"
    lines.append(f"| **Total** | {_k(total)} | {_k(nonzero)} | {100 * nonzero / total:.2f}% | {paper_total} |")
    lines += [
        "",
        "| | ours | paper |",
        "|---|---:|---:|",
        f"| Compression | {summary['compression']:.2f}x | {f'{pc}x' if pc else '-'} |",
        f"| Dense top-1 | {100 * summary['dense_acc']:.2f}% | {_pct(pd)} |",
        f"| Pruned + retrained top-1 | {100 * summary['final_acc']:.2f}% | {_pct(pa)} |",
        # Top-5 only where it says something (ImageNet-sized label sets); with 10 classes it is ~100%.
        *([f"| Dense top-5 | {_pct(summary.get('dense_top5'))} | {_pct(paper.get('dense_top5'))} |",
           f"| Pruned + retrained top-5 | {_pct(summary.get('final_top5'))} | {_pct(paper.get('top5'))} |"]
          if "final_top5" in summary and _num_classes(summary) > 10 else []),
        f"| Accuracy change vs own dense | {100 * (summary['final_acc'] - summary['dense_acc']):+.2f} pts | |",
    ]
    structured = {n: k for n, k in (summary.get("sparsity") or {}).items() if k != "unstructured"}
    if structured:
        lines.append(f"| Structured layers | {', '.join(f'{n} {k}' for n, k in structured.items())} | |")
    if summary.get("conv_compression"):
        lines.append(f"| Conv-layer compression | {summary['conv_compression']:.2f}x | |")
    flops = summary.get("flops")
    if flops:
        lines += [f"| FLOPs per image, dense -> remaining | {_k(flops['dense'])} -> {_k(flops['remaining'])} | |",
                  f"| Theoretical speedup (dense / remaining FLOPs) | {flops['theoretical_speedup']:.2f}x | |"]
    lines.append("")
    lines += storage_table(summary.get("storage"))
    if flops:
        lines.append("FLOPs: conv and linear layers, one image, counted with FlopCounterMode; remaining = the "
                     "FLOPs of the nonzero weights of the physically shrunk model (definition: summary.json, "
                     "flops.flops_definition).")
    if paper.get("source"):
        lines.append(f"Paper figures: {paper['source']}.")
    if summary.get("provenance"):
        lines.append(describe(summary["provenance"]))
    if summary["data"] == "mnist10k":
        lines.append("Data: the `mnist10k` protocol (7,000 train incl. validation / 3,000 test from the "
                     "official test set): absolute accuracies are not comparable to the paper's 60k/10k.")
    atomic_write(path, lambda p: p.write_text("\n".join(lines) + "\n"))
