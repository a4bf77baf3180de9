"""The CSR inference path (export/sparse.py) computes the dense layers' function exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from admm_pruning.export.sparse import SparseConv2d, SparseLinear, sparsify
from admm_pruning.models.lenet import LeNet5
from admm_pruning.sparsity.masks import apply_masks, magnitude_masks, remove_masks


def _prune_(layer: nn.Module, keep: float, seed: int = 0) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        layer.weight.mul_(torch.rand(layer.weight.shape, generator=gen) < keep)


def test_a_sparse_linear_matches_the_dense_one_on_any_leading_shape():
    torch.manual_seed(0)
    dense = nn.Linear(40, 30)
    _prune_(dense, 0.1)
    sparse = SparseLinear(dense)
    assert sparse.weight.layout == torch.sparse_csr
    assert sparse.weight.values().numel() == int(torch.count_nonzero(dense.weight))
    for shape in [(1, 40), (7, 40), (2, 3, 40)]:
        x = torch.randn(*shape)
        assert torch.allclose(sparse(x), dense(x), atol=1e-5)


def test_sparse_layers_move_with_the_module():
    """.to() moves the CSR weight and the bias (plain attributes stayed behind)."""
    torch.manual_seed(0)
    linear, conv = nn.Linear(40, 30), nn.Conv2d(3, 8, 3, padding=(1, 1))
    _prune_(linear, 0.1)
    _prune_(conv, 0.1)
    for dense, sparse, x in ((linear, SparseLinear(linear), torch.randn(5, 40)),
                             (conv, SparseConv2d(conv), torch.randn(2, 3, 9, 9))):
        sparse = sparse.to(torch.float64)
        assert sparse.weight.dtype == sparse.bias.dtype == torch.float64
        assert sparse.weight.layout == torch.sparse_csr
        assert torch.allclose(sparse(x.double()), dense.double()(x.double()), atol=1e-10)


@pytest.mark.parametrize("kwargs", [
    {"kernel_size": 5},
    {"kernel_size": (3, 2), "stride": 2, "padding": 1},
    {"kernel_size": 3, "dilation": 2, "padding": 2, "bias": False},
])
def test_a_sparse_conv_matches_the_dense_one(kwargs):
    torch.manual_seed(0)
    dense = nn.Conv2d(6, 8, **kwargs)
    _prune_(dense, 0.2)
    x = torch.randn(3, 6, 13, 11)
    assert torch.allclose(SparseConv2d(dense)(x), dense(x), atol=1e-5)


def test_sparsify_swaps_the_sparse_layers_of_a_pruned_lenet_and_keeps_its_function():
    torch.manual_seed(0)
    model = LeNet5(dropout=0.0, conv_relu=True, init="tf").eval()
    keep = {"conv2": 0.04, "fc1": 0.009, "fc2": 0.5}  # conv1 stays dense, fc2 above the threshold
    apply_masks(model, magnitude_masks(model, keep))
    with pytest.raises(ValueError, match="conv2: a masked layer"):
        sparsify(model)
    remove_masks(model)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        ref = model(x)
        assert sparsify(model) == ["conv2", "fc1"]
        assert isinstance(model.conv2, SparseConv2d) and isinstance(model.fc1, SparseLinear)
        assert isinstance(model.conv1, nn.Conv2d) and isinstance(model.fc2, nn.Linear)
        assert torch.allclose(model(x), ref, atol=1e-5)
