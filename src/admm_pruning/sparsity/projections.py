"""Euclidean projections onto sparsity sets (the ADMM Z-step and the hard prune).

Unstructured: keep the k entries of largest magnitude. Structured (ADAM-ADMM): the weight is
cut into groups and at most k groups may be nonzero; ||W - P||^2 is the sum of the squared
norms of the groups P drops, so the projection keeps the k groups of largest L2 norm.
Weights are (out, in) for Linear and (out, in, kh, kw) for Conv2d. A grouped conv (``groups``
towers, as CaffeNet's conv2/4/5) is ``groups`` weight matrices side by side: its channel and
shape groups are per tower, so column j of one tower is never tied to column j of another.
"""

from __future__ import annotations

import math
import re

import torch

CONV_SPARSITY = ("unstructured", "filter", "channel", "shape")
LINEAR_SPARSITY = ("unstructured", "row", "column")
NM_PATTERN = re.compile(r"^(\d+):(\d+)$")  # N:M, e.g. 2:4: N nonzero in every M consecutive weights of a row


def n_m(sparsity: str) -> tuple[int, int] | None:
    """(N, M) of an ``N:M`` type (0 < N < M), None for any other type."""
    found = NM_PATTERN.match(str(sparsity))
    if not found:
        return None
    n, m = int(found.group(1)), int(found.group(2))
    if not 0 < n < m:
        raise ValueError(f"sparsity {sparsity!r}: N:M needs 0 < N < M")
    return n, m


def nm_mask(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep the N largest magnitudes of every M consecutive weights along a row of the (out, -1)
    weight matrix: for a Linear, along its inputs, the layout sparse tensor cores read; for a conv,
    along its flattened (in, kh, kw) row. The exact Euclidean projection, since the groups are
    disjoint. Ties go to the lower index."""
    rows = w.detach().reshape(w.shape[0], -1)
    if rows.shape[1] % m:
        raise ValueError(f"N:M sparsity {n}:{m}: rows of {rows.shape[1]} weights do not split into groups of {m}")
    groups = rows.abs().reshape(-1, m)
    order = torch.argsort(groups, dim=1, descending=True, stable=True)[:, :n]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, order, True)
    return keep.reshape(w.shape)


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
    if k <= 0 or k >= flat.numel():
        return torch.full_like(flat, k > 0, dtype=torch.bool).view_as(w)
    # the k-th largest magnitude by topk, not a full sort (fc1's 400k weights: about 10x faster);
    # everything above it, then the ties at it in index order: the stable descending sort's top k
    kth = torch.topk(flat, k, sorted=False).values.min()
    if torch.isnan(kth):  # NaN ranks above everything in both sorts, and equals nothing: sort
        order = torch.argsort(flat, descending=True, stable=True)
        return torch.zeros_like(flat, dtype=torch.bool).index_fill_(0, order[:k], True).view_as(w)
    mask = flat > kth
    ties = torch.nonzero(flat == kth).squeeze(1)
    mask[ties[: k - int(mask.sum())]] = True
    return mask.view_as(w)


def project_topk(w: torch.Tensor, keep: float) -> torch.Tensor:
    """Proj onto {card(W) <= k}: keep the k largest magnitudes, zero the rest."""
    return w * topk_mask(w, keep_count(w.numel(), keep))


def sparsity_types(ndim: int) -> tuple[str, ...]:
    """The named sparsity types of a weight of this rank: Linear (2-d) or conv (4-d); ``N:M`` fits both."""
    return LINEAR_SPARSITY if ndim == 2 else CONV_SPARSITY


def nm_keep(sparsity: str) -> float | None:
    """The keep fraction an N:M type implies (N / M), None for other types."""
    found = n_m(sparsity)
    return None if found is None else found[0] / found[1]


def group_dims(sparsity: str, ndim: int) -> tuple[int, ...]:
    """The weight dimensions that index a group; a group spans all the other dimensions.

    filter / row: one output unit; channel / column: one input unit; shape: one (c, kh, kw)
    position across all filters (a column of the im2col weight matrix); unstructured: one entry.
    """
    if sparsity not in sparsity_types(ndim):
        raise ValueError(f"sparsity {sparsity!r} does not apply to a {ndim}-d weight; "
                         f"choose from {', '.join(sparsity_types(ndim))}")
    return {"unstructured": tuple(range(ndim)), "filter": (0,), "row": (0,), "channel": (1,),
            "column": (1,), "shape": tuple(range(1, ndim))}[sparsity]


def per_tower(sparsity: str, groups: int) -> bool:
    """Whether a type's groups split by tower: channel and shape groups span the filters of one tower."""
    return groups > 1 and sparsity in ("channel", "shape")


def group_count(shape: torch.Size | tuple[int, ...], sparsity: str, groups: int = 1) -> int:
    """Number of groups a weight of this shape has: ``keep`` counts groups, not entries (an N:M
    type counts entries: its keep is N / M)."""
    if n_m(sparsity):
        return math.prod(shape)
    towers = groups if per_tower(sparsity, groups) else 1
    return towers * math.prod(shape[d] for d in group_dims(sparsity, len(shape)))


def group_mask(w: torch.Tensor, sparsity: str, k: int, groups: int = 1) -> torch.Tensor:
    """Boolean mask (w's shape) keeping the k groups of largest L2 norm.

    Ties go to the lower group index (row-major over the group dimensions), as in
    ``topk_mask``, which is exactly what the unstructured case runs. A grouped conv's channel
    and shape groups are taken per tower: the weight is viewed as (towers, out/towers, ...), and
    the tower joins the group's index.
    """
    if sparsity == "unstructured":
        return topk_mask(w, k)
    if (nm := n_m(sparsity)) is not None:
        return nm_mask(w, *nm)
    if per_tower(sparsity, groups):
        towers = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])
        dims = (0, *(d + 1 for d in group_dims(sparsity, w.dim())))
        return _groups_mask(towers, dims, k).reshape(w.shape)
    return _groups_mask(w, group_dims(sparsity, w.dim()), k)


def _groups_mask(w: torch.Tensor, dims: tuple[int, ...], k: int) -> torch.Tensor:
    """The k groups of largest L2 norm, a group indexed by ``dims`` and spanning the others."""
    other = tuple(d for d in range(w.dim()) if d not in dims)
    keep = topk_mask(w.detach().pow(2).sum(dim=other), k)  # squared norms: same order, no sqrt
    shape = [w.shape[d] if d in dims else 1 for d in range(w.dim())]
    return keep.reshape(shape).expand(w.shape).clone()


def project(w: torch.Tensor, keep: float, sparsity: str = "unstructured", groups: int = 1) -> torch.Tensor:
    """Proj onto {W: at most keep_count(groups, keep) nonzero groups}."""
    return w * group_mask(w, sparsity, keep_count(group_count(w.shape, sparsity, groups), keep), groups)
