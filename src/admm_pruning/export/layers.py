"""The exported (shrunk) model's layers and loader: torch only, so a shrunk model loads without
the suite's training code. ``build_model`` / ``load_shrunk`` turn the JSON layer list plus a
plain state dict back into an ``nn.Sequential``."""

from __future__ import annotations

import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

FORMAT = "admm_pruning.shrunk/1"

class Select(nn.Module):
    """Keeps the given indices of dim 1 (channels, or features after a flatten)."""

    def __init__(self, index: list[int]) -> None:
        super().__init__()
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index)


class ColumnConv2d(nn.Module):
    """A conv that keeps only some (c, kh, kw) columns of its im2col weight matrix (ADAM-ADMM's
    shape-wise sparsity): the kept input patches are gathered straight from the (padded) input
    and multiplied by the (out, kept columns) weight, so removed columns cost neither FLOPs nor
    memory traffic. ``columns`` are flat indices c * kh * kw + i * kw + j of the dense kernel.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: list[int], stride: list[int],
                 padding: list[int], dilation: list[int], bias: bool, columns: list[int]) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride = tuple(kernel_size), tuple(stride)
        self.padding, self.dilation = tuple(padding), tuple(dilation)
        self.register_buffer("columns", torch.tensor(columns, dtype=torch.long), persistent=False)
        self.weight = nn.Parameter(torch.zeros(out_channels, len(columns)))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self._gather: dict[tuple[int, int, str, bool], tuple[torch.Tensor, int, int]] = {}

    def _index(self, h: int, w: int, device: torch.device, nhwc: bool) -> tuple[torch.Tensor, int, int]:
        """Flat input positions of every kept column at every output position, in the input's
        NCHW or NHWC order, cached per input size, device and layout."""
        key = (h, w, str(device), nhwc)
        if key not in self._gather:
            (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
            hp, wp = h + 2 * self.padding[0], w + 2 * self.padding[1]
            ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
            c, rest = self.columns.cpu() // (kh * kw), self.columns.cpu() % (kh * kw)
            row = (rest // kw * dh)[:, None, None] + (torch.arange(ho) * sh)[None, :, None]
            col = (rest % kw * dw)[:, None, None] + (torch.arange(wo) * sw)[None, None, :]
            c = c[:, None, None]
            flat = (row * wp + col) * self.in_channels + c if nhwc else c * hp * wp + row * wp + col
            # position-major (ho, wo, column): each output position's patch is one contiguous row
            self._gather[key] = (flat.permute(1, 2, 0).reshape(-1).to(device), ho, wo)
        return self._gather[key]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """One GEMM, (n*ho*wo, kept columns) x (kept columns, out), whose result is already the
        output in channels-last order: returned as an NCHW-shaped view with NHWC strides, the
        layout the next pooling and conv run fastest in (training/fast.py). A channels-last input
        is gathered from in place, without a copy to NCHW."""
        n, _, h, w = x.shape
        if any(self.padding):
            x = F.pad(x, (self.padding[1], self.padding[1], self.padding[0], self.padding[0]))
        nhwc = not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        index, ho, wo = self._index(h, w, x.device, nhwc)
        flat = x.permute(0, 2, 3, 1).reshape(n, -1) if nhwc else x.reshape(n, -1)
        patches = flat.index_select(1, index).view(n * ho * wo, len(self.columns))
        if self.bias is None:
            out = patches @ self.weight.t()
        else:
            out = torch.addmm(self.bias, patches, self.weight.t())
        return out.view(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)


LAYER_TYPES: dict[str, type[nn.Module]] = {
    "Conv2d": nn.Conv2d, "Linear": nn.Linear, "BatchNorm1d": nn.BatchNorm1d, "BatchNorm2d": nn.BatchNorm2d,
    "ReLU": nn.ReLU, "MaxPool2d": nn.MaxPool2d, "AvgPool2d": nn.AvgPool2d,
    "AdaptiveAvgPool2d": nn.AdaptiveAvgPool2d, "Flatten": nn.Flatten, "Select": Select,
    "LocalResponseNorm": nn.LocalResponseNorm,
    "ColumnConv2d": ColumnConv2d,
}
# The layers that hold prunable weights, in a model ``build_model`` makes.
WEIGHTED_TYPES = (nn.Conv2d, nn.Linear, ColumnConv2d)


def build_model(config: dict[str, Any]) -> nn.Sequential:
    """An nn.Sequential from a shrunk model's JSON config: {"layers": [{"name", "type", "args"}]}."""
    return nn.Sequential(OrderedDict(
        (layer["name"], LAYER_TYPES[layer["type"]](**layer["args"])) for layer in config["layers"]))


def load_model(config: dict[str, Any], state: dict[str, torch.Tensor]) -> nn.Sequential:
    """``build_model`` with its weights loaded, in eval mode."""
    model = build_model(config)
    model.load_state_dict(state)
    return model.eval()


def load_shrunk(folder: Path) -> nn.Sequential:
    """Load an exported shrunk model (model.json + weights.pt)."""
    folder = Path(folder)
    return load_model(json.loads((folder / "model.json").read_text()),
                      torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
