"""Per-layer sparsity types (``pruner.sparsity``), checked before anything trains.

A layer's type picks its projection (see ``projections.group_dims``): conv layers take
unstructured, filter, channel or shape; linear layers take unstructured, row or column; both take
N:M (e.g. 2:4: N nonzero in every M consecutive weights of a row), whose keep fraction is N / M.
Layers not named stay unstructured; layers without a ``prune.keep`` entry stay dense.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import nn

from admm_pruning.sparsity.projections import n_m, sparsity_types


class SparsityError(ValueError):
    """A ``pruner.sparsity`` entry that cannot work, named by its key."""


def check_sparsity(layers: Mapping[str, nn.Module], keep: Mapping[str, float],
                   sparsity: Mapping[str, str] | None) -> None:
    """Refuse unknown layers, unknown types, types that do not fit the layer and layers that
    are not pruned, so a typo fails before pretraining rather than after it."""
    for name, kind in (sparsity or {}).items():
        key = f"pruner.sparsity.{name}"
        if name not in layers:
            raise SparsityError(f"{key}={kind}: unknown layer {name!r}; prunable layers are "
                                f"{', '.join(layers)}")
        allowed = sparsity_types(layers[name].weight.dim())
        try:
            nm = n_m(kind)
        except ValueError as exc:
            raise SparsityError(f"{key}={kind}: {exc}") from None
        if nm is not None:
            width = layers[name].weight[0].numel()
            if width % nm[1]:
                raise SparsityError(f"{key}={kind}: layer {name}'s rows of {width} weights do not split into "
                                    f"groups of {nm[1]}")
            if name in keep and abs(keep[name] - nm[0] / nm[1]) > 1e-9:
                raise SparsityError(f"{key}={kind} keeps {nm[0] / nm[1]:g} of layer {name}, but its keep "
                                    f"fraction is {keep[name]}: set it to {nm[0]}/{nm[1]}")
        elif kind not in allowed:
            raise SparsityError(f"{key}={kind}: unknown sparsity type for {type(layers[name]).__name__} "
                                f"layer {name}; choose from {', '.join(allowed)}")
        if name not in keep:
            raise SparsityError(f"{key}={kind}: layer {name} has no prune.keep entry, so it is not pruned")
