"""Euclidean projections onto sparsity sets (the ADMM Z-step and the hard prune)."""

from __future__ import annotations

import torch


def keep_count(numel: int, keep: float) -> int:
    """Number of entries a layer keeps: round(keep * numel), but never fewer than one.

    A layer pruned to zero weights disconnects the network, so a keep fraction that
    rounds to zero keeps the single largest entry instead.
    """
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep fraction must lie in (0, 1], got {keep}")
    return min(numel, max(1, round(keep * numel)))


def topk_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask of the k entries of largest magnitude.

    Ties are broken by position (lower flat index wins), so the mask is deterministic and
    has exactly k ones, which makes the projection exact even with repeated magnitudes.
    """
    flat = w.detach().abs().flatten()
    order = torch.argsort(flat, descending=True, stable=True)
    mask = torch.zeros_like(flat, dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view_as(w)


def project_topk(w: torch.Tensor, keep: float) -> torch.Tensor:
    """Proj onto {card(W) <= k}: keep the k largest magnitudes, zero the rest."""
    return w * topk_mask(w, keep_count(w.numel(), keep))
