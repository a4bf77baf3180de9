"""The sensitivity scan behind ``prune.profile=sensitivity``: prune each layer alone, by
magnitude, to several keep levels and measure validation accuracy (no retraining). It evaluates
and caches, so it sits beside the plan that calls it; the arithmetic that turns the scan into
kept fractions is ``sparsity/profiles.py``. Selection only ever reads the validation split.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from admm_pruning.foundations.files import atomic_write
from admm_pruning.models.layers import prunable_layers
from admm_pruning.sparsity.masks import apply_masks, magnitude_masks, remove_masks
from admm_pruning.sparsity.profiles import global_magnitude_profile, sensitivity_profile
from admm_pruning.store.descriptions import PretrainDesc, SensitivityDesc
from admm_pruning.store.stages import StageCache
from admm_pruning.training.context import StageContext


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
                levels: list[float], cache: StageCache, parent: PretrainDesc) -> tuple[dict[str, float], dict]:
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

    done = cache.run(SensitivityDesc(parent, list(levels)), compute)
    keep, tol = sensitivity_profile(done.metrics, sizes, layers, compression)
    return keep, {"profile": profile, "tolerance_pts": 100 * tol, "scan_dir": str(done.dir)}
