"""Per-layer kept fractions from one overall compression (``prune.profile``), the arithmetic
only: the scan that measures each layer's sensitivity trains nothing but does evaluate and
cache, so it lives beside the plan (``admm_pruning/sensitivity.py``).

- ``sensitivity``: a layer's tolerance is the smallest keep level whose validation accuracy
  (that layer pruned alone) stays within ``tol`` of dense; the profile of those levels is then
  scaled to hit the target exactly. ``tol`` is chosen as the one whose unscaled profile lands
  nearest the target, so scaling changes the scan's answer as little as possible.
- ``global_magnitude``: the per-layer kept fractions one global magnitude threshold picks.
- ``preset``: ``prune.keep`` as written (scaled by ``prune.compression`` when that is set).
"""

from __future__ import annotations

import math
from typing import Any

from torch import nn

from admm_pruning.models.layers import prunable_layers
from admm_pruning.sparsity.masks import global_magnitude_masks
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.sparsity.targets import scale_profile

PROFILES = ("preset", "sensitivity", "global_magnitude")


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
