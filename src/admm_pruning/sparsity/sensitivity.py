"""Automatic per-layer targets from one overall compression (``prune.profile``).

- ``sensitivity``: prune each layer alone, by magnitude, to several keep levels and measure
  validation accuracy (no retraining). A layer's tolerance is the smallest level whose
  accuracy stays within ``tol`` of dense; the profile of those levels is then scaled to hit
  the target exactly. ``tol`` is chosen as the one whose unscaled profile lands nearest the
  target, so scaling changes the scan's answer as little as possible.
- ``global_magnitude``: the per-layer kept fractions one global magnitude threshold picks.
- ``preset``: ``prune.keep`` as written (scaled by ``prune.compression`` when that is set).

Selection only ever reads the validation split.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from admm_pruning.models.layers import prunable_layers
from admm_pruning.sparsity.masks import apply_masks, global_magnitude_masks, magnitude_masks, remove_masks
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.sparsity.targets import scale_profile
from admm_pruning.store.stages import StageCache, atomic_write
from admm_pruning.training.context import StageContext

PROFILES = ("preset", "sensitivity", "global_magnitude")


def scan(ctx: StageContext, model: nn.Module, levels: list[float]) -> dict[str, Any]:
    """Validation accuracy with each layer alone pruned to each keep level."""
    if not len(ctx.data.setup().val):
        raise ValueError("prune.profile=sensitivity needs a validation split (data.val_size > 0)")
    dense = ctx.evaluate(model, "val")
    acc: dict[str, dict[str, float]] = {}
    for name in prunable_layers(model):
        acc[name] = {}
        for level in levels:
            saved = model.get_submodule(name).weight.detach().clone()
            apply_masks(model, magnitude_masks(model, {name: level}))
            acc[name][f"{level:g}"] = ctx.evaluate(model, "val")
            remove_masks(model)
            with torch.no_grad():
                model.get_submodule(name).weight.copy_(saved)
    return {"dense_val_acc": dense, "levels": list(levels), "acc": acc}


def _tolerant_level(row: dict[str, float], levels: list[float], floor: float) -> float:
    """Smallest keep level whose accuracy is >= floor (1.0 if none is)."""
    ok = [lv for lv in levels if row[f"{lv:g}"] >= floor]
    return min(ok) if ok else 1.0


def sensitivity_profile(result: dict[str, Any], sizes: dict[str, int], layers: list[str],
                        compression: float) -> tuple[dict[str, float], float]:
    """Per-layer keep fractions (exactly ``compression`` overall) and the tolerance used."""
    levels, dense = result["levels"], result["dense_val_acc"]
    drops = sorted({max(0.0, dense - a) for n in layers for a in result["acc"][n].values()} | {0.0})
    best: tuple[float, float, dict[str, float]] | None = None
    for tol in drops:
        prof = {n: _tolerant_level(result["acc"][n], levels, dense - tol - 1e-12) for n in layers}
        kept = sum(keep_count(sizes[n], f) for n, f in prof.items()) + sum(
            s for n, s in sizes.items() if n not in prof)
        gap = abs(math.log(sum(sizes.values()) / kept) - math.log(compression))
        if best is None or gap < best[0]:
            best = (gap, tol, prof)
    assert best is not None
    return scale_profile(sizes, best[2], compression), best[1]


def global_magnitude_profile(model: nn.Module, layers: list[str], compression: float) -> dict[str, float]:
    """Kept fractions of one global threshold over ``layers`` keeping total/compression weights."""
    sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    fixed = sum(s for n, s in sizes.items() if n not in layers)
    k = round(sum(sizes.values()) / compression) - fixed
    if k < len(layers):
        raise ValueError(f"prune.compression={compression:g}: unreachable with layers {', '.join(layers)}")
    masks = global_magnitude_masks(model, layers, k)
    return {n: int(masks[n].sum()) / sizes[n] for n in layers}


def write_scan(d: Path, result: dict[str, Any]) -> None:
    """The scan as a markdown table and a plot (accuracy vs kept fraction, one line per layer)."""
    levels = result["levels"]
    lines = [f"Validation accuracy with one layer pruned alone by magnitude (no retraining); "
             f"dense {100 * result['dense_val_acc']:.2f}%.", "",
             "| layer | " + " | ".join(f"keep {lv:g}" for lv in levels) + " |",
             "|---|" + "---:|" * len(levels)]
    for name, row in result["acc"].items():
        lines.append(f"| {name} | " + " | ".join(f"{100 * row[f'{lv:g}']:.2f}" for lv in levels) + " |")
    atomic_write(d / "sensitivity.md", lambda p: p.write_text("\n".join(lines) + "\n"))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in result["acc"].items():
        ax.plot(levels, [100 * row[f"{lv:g}"] for lv in levels], marker="o", label=name)
    ax.axhline(100 * result["dense_val_acc"], color="k", ls="--", lw=1, label="dense")
    ax.set(xscale="log", xlabel="kept fraction of the layer", ylabel="validation top-1 (%)",
           title="Layer-wise pruning sensitivity")
    ax.legend()
    fig.tight_layout()
    atomic_write(d / "sensitivity.png", lambda p: fig.savefig(p, format="png", dpi=120))
    plt.close(fig)


def derive_keep(profile: str, ctx: StageContext, model: nn.Module, layers: list[str], compression: float,
                levels: list[float], cache: StageCache, parent: dict[str, Any]) -> tuple[dict[str, float], dict]:
    """Per-layer keep fractions of ``layers`` at exactly ``compression`` from the dense ``model``.

    The sensitivity scan is a cached stage keyed by the dense stage's settings and the levels,
    so every later run on that dense checkpoint reuses it.
    """
    sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    if profile == "global_magnitude":
        return global_magnitude_profile(model, layers, compression), {"profile": profile}

    def compute(d: Path, resume: Path | None) -> dict[str, Any]:
        result = scan(ctx, model, levels)
        write_scan(d, result)
        return result

    done = cache.run("sensitivity", {"parent": parent, "levels": list(levels)}, compute)
    keep, tol = sensitivity_profile(done.metrics, sizes, layers, compression)
    return keep, {"profile": profile, "tolerance_pts": 100 * tol, "scan_dir": str(done.dir)}
