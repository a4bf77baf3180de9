"""Unstructured sparsity made real at inference: layers that multiply by a compressed sparse row
(CSR) weight through torch.sparse, whose CPU kernels are MKL's sparse BLAS.

- ``SparseLinear``: y = x W^T + b as (W_csr @ x^T)^T, so the sparse operand is on the left, the
  form the CSR kernels take.
- ``SparseConv2d``: the convolution as im2col (``F.unfold``) and one CSR x dense product:
  W_csr (out, c*kh*kw) @ columns (c*kh*kw, N*L).

``sparsify`` swaps them in for the dense layers of an exported (plain or shrunk) model whose
weights are sparse enough to pay; everything else, and the function computed, stays the same.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn

warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")

# At or below this fraction of nonzero weights a layer goes sparse. Measured on the 2-core VM
# (Intel Xeon, AVX-512, one thread): MKL's CSR x dense product ran at about 2.4 GMAC/s, dense
# GEMM at about 30, so CSR pays only below about 8% nonzero (LeNet-5's conv2 at 8%: 14.5 ms
# CSR against 13.3 ms dense; fc1 at 0.9%: 0.39 ms against 3.3 ms, batch 256).
MAX_DENSITY = 0.05


def _register(module: nn.Module, layer: nn.Module) -> None:
    """The CSR weight (a conv's as its (out, c*kh*kw) matrix) and the bias as buffers, so that
    ``.to(device)`` and ``.to(dtype)`` move them with the module."""
    module.register_buffer("weight", layer.weight.detach().flatten(1).to_sparse_csr())
    module.register_buffer("bias", None if layer.bias is None else layer.bias.detach().clone())


class SparseLinear(nn.Module):
    """nn.Linear with a CSR weight (only its nonzeros stored and multiplied)."""

    def __init__(self, layer: nn.Linear) -> None:
        super().__init__()
        _register(self, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        # the dense operand contiguous as (in, batch): MKL's kernel is 8x slower on the strided view
        out = (self.weight @ x.reshape(-1, x.shape[-1]).t().contiguous()).t()
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*lead, -1)


class SparseConv2d(nn.Module):
    """nn.Conv2d (groups 1) as im2col and a CSR x dense product."""

    def __init__(self, layer: nn.Conv2d) -> None:
        super().__init__()
        if layer.groups != 1 or not isinstance(layer.padding, tuple):
            raise ValueError(f"SparseConv2d takes groups=1 and explicit padding, got {layer}")
        self.out_channels = layer.out_channels
        self.kernel_size, self.stride = layer.kernel_size, layer.stride
        self.padding, self.dilation = layer.padding, layer.dilation
        _register(self, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols, (n, ho, wo) = im2col(x, self.kernel_size, self.stride, self.padding, self.dilation)
        out = (self.weight @ cols).view(self.out_channels, n, ho, wo).transpose(0, 1).contiguous()
        if self.bias is not None:
            out = out + self.bias.view(1, -1, 1, 1)
        return out


def im2col(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int],
           dilation: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """The (c*kh*kw, n*ho*wo) column matrix, written in one pass from a strided view of ``x``.
    F.unfold gives (n, c*kh*kw, L) and needs a second copy to reach this layout, which the CSR
    product wants; measured 1.7x slower for LeNet-5's conv2 at batch 256."""
    if any(padding):
        x = F.pad(x, (padding[1], padding[1], padding[0], padding[0]))
    x = x.contiguous()
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    ho, wo = (h - dh * (kh - 1) - 1) // sh + 1, (w - dw * (kw - 1) - 1) // sw + 1
    sn, sc, sy, sx = x.stride()
    view = x.as_strided((c, kh, kw, n, ho, wo), (sc, sy * dh, sx * dw, sn, sy * sh, sx * sw))
    return view.reshape(c * kh * kw, n * ho * wo), (n, ho, wo)


def density(weight: torch.Tensor) -> float:
    return int(torch.count_nonzero(weight)) / weight.numel()


def sparsify(model: nn.Module, max_density: float = MAX_DENSITY) -> list[str]:
    """Replace, in place, every nn.Linear and groups-1 nn.Conv2d whose weight has at most
    ``max_density`` nonzeros by its CSR layer. Returns the names of the layers replaced. The model
    must be plain (no mask parametrizations): export or remove the masks first."""
    swapped = []
    for name, layer in list(model.named_modules()):
        if isinstance(layer, nn.Linear):
            sparse = SparseLinear
        elif isinstance(layer, nn.Conv2d) and layer.groups == 1 and isinstance(layer.padding, tuple):
            sparse = SparseConv2d
        else:
            continue
        if hasattr(layer, "parametrizations"):
            raise ValueError(f"{name}: a masked layer; sparsify the plain model (remove_masks first)")
        if density(layer.weight) > max_density:
            continue
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, sparse(layer))
        swapped.append(name)
    return swapped
