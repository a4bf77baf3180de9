"""Sparsity verified, not assumed: before a summary is published, the final weights and masks are
reloaded from disk and recounted, and every claim in the summary must equal the recount."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .results import SparsityMismatchError, count_sparsity
from .stages import ARTIFACTS, StageResult, load_tensors, sha256

# summary key -> count_sparsity key, for every sparsity figure a summary claims.
CLAIMS = {"compression": "compression", "conv_compression": "conv_compression", "total_weights": "total",
          "nonzero_weights": "nonzero", "per_layer": "per_layer"}


def verify_sparsity(summary: dict[str, Any], final: StageResult, prune_dir: Path, layers: list[str]) -> None:
    """Raise SparsityMismatchError unless the files on disk back the summary exactly.

    Checks: the final files are the ones the retrain stage recorded when it finished; no nonzero
    weight lies outside its mask; retraining kept the pruner's masks; and the summary's
    compression figures, totals and per-layer counts equal a fresh recount.
    """
    for name, digest in final.metrics.get(ARTIFACTS, {}).items():
        if sha256(final.dir / name) != digest:
            raise SparsityMismatchError(f"{final.dir / name} changed after its stage finished")
    weights = load_tensors(final.dir / "weights.pt")
    masks = load_tensors(final.dir / "masks.pt")
    pruned = load_tensors(prune_dir / "masks.pt")
    for layer, mask in pruned.items():
        if layer not in masks or not torch.equal(masks[layer].bool(), mask.bool()):
            raise SparsityMismatchError(f"{final.dir / 'masks.pt'}: layer {layer}'s mask differs from "
                                        f"the pruner's {prune_dir / 'masks.pt'}")
    try:
        recount = count_sparsity(weights, layers, masks)
    except SparsityMismatchError as exc:
        raise SparsityMismatchError(f"{final.dir / 'weights.pt'}: {exc}") from exc
    for key, counted in CLAIMS.items():
        if counted in recount and summary.get(key) != recount[counted]:
            raise SparsityMismatchError(f"summary {key}={summary.get(key)!r} but {final.dir / 'weights.pt'} "
                                        f"recounts to {recount[counted]!r}")
