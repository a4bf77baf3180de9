"""The deployable export of a shrunk model: weights as safetensors, the architecture as a JSON
layer list of plain ``torch.nn`` layers, and ONNX, so that a pruned model loads without this
package (``load_portable`` below rebuilds it with torch alone; onnxruntime runs the ONNX file).

The shrunk model's two layers of its own are rewritten in terms anyone can rebuild:

- ``Select`` (inputs a layer never uses) becomes ``IndexSelect``: y = torch.index_select(x, dim,
  index), its int64 ``index`` stored in the safetensors file as ``<layer>.index``.
- ``ColumnConv2d`` (a shape-wise pruned conv) becomes nn.Unfold (im2col) -> IndexSelect of the
  kept columns (c * kh * kw + i * kw + j) -> nn.Conv1d(kernel_size=1) holding the (out, kept)
  weight -> nn.Unflatten to (out, ho, wo). Removed columns are not stored, not zero-filled.

The ONNX graph is the same function in the operators runtimes run fastest: a shape-wise conv is
one Conv over the shrunk channels with zeros in its removed columns (onnxruntime ran the im2col
form's Gathers slower than the whole dense network; the Conv form: results/deploy.md).
"""

from __future__ import annotations

import io
import json
import logging
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Any

import onnx
import onnxruntime
import safetensors.torch
import torch
from torch import nn

from admm_pruning.export.layers import ColumnConv2d
from admm_pruning.export.shrink import Shrunk
from admm_pruning.foundations.files import atomic_write

log = logging.getLogger("admm_pruning")

FORMAT = "admm_pruning.portable/1"
ARCHITECTURE, WEIGHTS, ONNX = "architecture.json", "model.safetensors", "model.onnx"
# Every layer type an architecture file may name: torch.nn classes, and IndexSelect below.
NN_TYPES = ("Conv2d", "Conv1d", "Linear", "BatchNorm1d", "BatchNorm2d", "ReLU", "MaxPool2d", "AvgPool2d",
            "AdaptiveAvgPool2d", "Flatten", "Unflatten", "Unfold", "LocalResponseNorm")
OPS = {"IndexSelect": "y = torch.index_select(x, dim, index); index: the int64 tensor '<layer>.index' in the "
                      "safetensors file",
       "shape-wise pruned conv": "Unfold -> IndexSelect of the kept im2col columns (c*kh*kw + i*kw + j) -> "
                                 "Conv1d(kernel_size=1) with the (out, kept columns, 1) weight -> Unflatten; "
                                 "removed columns are not stored"}
OPSET = 17


class IndexSelect(nn.Module):
    """torch.index_select as a layer; the index is a (persistent) buffer, so it travels in the
    state dict and the safetensors file."""

    def __init__(self, dim: int, index: torch.Tensor) -> None:
        super().__init__()
        self.dim = dim
        self.register_buffer("index", index.to(torch.long).clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(self.dim, self.index)


def build_portable(architecture: dict[str, Any], tensors: dict[str, torch.Tensor]) -> nn.Sequential:
    """The model an architecture file describes, with ``tensors`` loaded (strictly), in eval mode.

    Only the layer types in NN_TYPES and IndexSelect are built: the file names classes, and an
    untrusted file must not reach any other attribute of torch.nn.
    """
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    for layer in architecture["layers"]:
        name, kind, args = layer["name"], layer["type"], layer["args"]
        if kind == "IndexSelect":
            layers[name] = IndexSelect(args["dim"], tensors[f"{name}.index"])
        elif kind in NN_TYPES:
            layers[name] = getattr(nn, kind)(**args)
        else:
            raise ValueError(f"layer {name}: type {kind!r} is not one of {', '.join(NN_TYPES)}, IndexSelect")
    model = nn.Sequential(layers)
    model.load_state_dict(tensors, strict=True)
    return model.eval()


def load_portable(folder: Path) -> nn.Sequential:
    """Rebuild an exported model from its architecture.json and model.safetensors."""
    folder = Path(folder)
    architecture = json.loads((folder / ARCHITECTURE).read_text())
    return build_portable(architecture, safetensors.torch.load_file(folder / architecture["weights"]))


def _output_sizes(shrunk: Shrunk) -> list[torch.Size]:
    """Each shrunk layer's output shape for one input: an Unflatten needs its conv's (ho, wo)."""
    x, sizes = torch.zeros(1, *shrunk.config["input_shape"]), []
    with torch.no_grad():
        for m in shrunk.module():
            x = m(x)
            sizes.append(x.shape)
    return sizes


def _column_conv(name: str, args: dict[str, Any], state: dict[str, torch.Tensor],
                 size: torch.Size) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """A ColumnConv2d as Unfold -> IndexSelect -> Conv1d(1) -> Unflatten (see the module docstring)."""
    columns = torch.tensor(args["columns"], dtype=torch.long)
    layers = [
        {"name": f"{name}_unfold", "type": "Unfold",
         "args": {k: args[k] for k in ("kernel_size", "dilation", "padding", "stride")}},
        {"name": f"{name}_columns", "type": "IndexSelect", "args": {"dim": 1}},
        {"name": name, "type": "Conv1d",
         "args": {"in_channels": len(columns), "out_channels": args["out_channels"], "kernel_size": 1,
                  "bias": args["bias"]}},
        {"name": f"{name}_unflatten", "type": "Unflatten", "args": {"dim": 2, "unflattened_size": list(size[2:])}},
    ]
    tensors = {f"{name}_columns.index": columns, f"{name}.weight": state[f"{name}.weight"].unsqueeze(-1)}
    if args["bias"]:
        tensors[f"{name}.bias"] = state[f"{name}.bias"]
    return layers, tensors


def to_portable(shrunk: Shrunk) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The architecture file's content and the tensors of the safetensors file."""
    layers: list[dict[str, Any]] = []
    tensors: dict[str, torch.Tensor] = {}
    for layer, size in zip(shrunk.config["layers"], _output_sizes(shrunk), strict=True):
        name, kind, args = layer["name"], layer["type"], layer["args"]
        if kind == "Select":
            layers.append({"name": name, "type": "IndexSelect", "args": {"dim": 1}})
            tensors[f"{name}.index"] = torch.tensor(args["index"], dtype=torch.long)
        elif kind == "ColumnConv2d":
            more_layers, more_tensors = _column_conv(name, args, shrunk.state, size)
            layers += more_layers
            tensors.update(more_tensors)
        else:
            layers.append({"name": name, "type": kind, "args": args})
            tensors.update({k: v for k, v in shrunk.state.items() if k.startswith(f"{name}.")})
    architecture = {"format": FORMAT, "weights": WEIGHTS, "input_shape": shrunk.config["input_shape"],
                    "ops": OPS, "layers": layers}
    return architecture, {k: v.detach().contiguous().clone() for k, v in tensors.items()}


def _onnx_bytes(model: nn.Module, example: torch.Tensor, preprocessing: dict[str, Any] | None = None) -> bytes:
    """The TorchScript exporter: it needs only the onnx package (the dynamo one needs onnxscript)
    and takes well under a second on these networks. The batch axis stays dynamic. The
    preprocessing goes in as the model's metadata (``preprocessing``, JSON)."""
    buffer = io.BytesIO()
    with warnings.catch_warnings():  # its deprecation notice, printed at the end of every run otherwise
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET, input_names=["input"],
                          output_names=["output"], dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    if preprocessing is None:
        return buffer.getvalue()
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(proto, {"preprocessing": json.dumps(preprocessing)})
    return proto.SerializeToString()


def as_conv(layer: ColumnConv2d) -> nn.Conv2d:
    """A shape-wise pruned conv as a plain Conv2d whose removed (c, kh, kw) columns are zero."""
    conv = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                     layer.dilation, bias=layer.bias is not None)
    with torch.no_grad():
        weight = torch.zeros(layer.out_channels, conv.weight[0].numel())
        weight[:, layer.columns] = layer.weight
        conv.weight.copy_(weight.view_as(conv.weight))
        if layer.bias is not None:
            conv.bias.copy_(layer.bias)
    return conv


def onnx_module(shrunk: Shrunk) -> nn.Sequential:
    """The shrunk model as the ONNX graph holds it: each ColumnConv2d as ``as_conv``."""
    model = shrunk.module()
    for name, layer in list(model.named_children()):
        if isinstance(layer, ColumnConv2d):
            setattr(model, name, as_conv(layer))
    return model.eval()


def save_portable(shrunk: Shrunk, folder: Path, preprocessing: dict[str, Any] | None = None) -> dict[str, int]:
    """Write architecture.json, model.safetensors and model.onnx to ``folder``; returns their sizes
    in bytes. Each file carries ``preprocessing`` (what the model must be fed: the pixel scaling,
    mean and std, input shape and class names): a user who feeds other inputs loses accuracy
    silently. The ONNX graph is exported from the shrunk model (``onnx_module``).
    A network ONNX cannot express (e.g. adaptive pooling to a size that does not divide its input,
    as AlexNet on small images) gets no model.onnx, and a warning: not every net is deployable as
    ONNX, and that must not fail the run."""
    folder = Path(folder)
    architecture, tensors = to_portable(shrunk)
    metadata = {"format": FORMAT}
    if preprocessing is not None:
        architecture["preprocessing"] = preprocessing
        metadata["preprocessing"] = json.dumps(preprocessing)
    blobs = {ARCHITECTURE: (json.dumps(architecture, indent=2) + "\n").encode(),
             WEIGHTS: safetensors.torch.save(tensors, metadata=metadata)}
    try:
        blobs[ONNX] = _onnx_bytes(onnx_module(shrunk), torch.zeros(1, *shrunk.config["input_shape"]), preprocessing)
    except torch.onnx.errors.OnnxExporterError as exc:
        log.warning("no ONNX export: %s", str(exc).splitlines()[0])
    for name, blob in blobs.items():
        atomic_write(folder / name, lambda p, b=blob: p.write_bytes(b))
    return {name: (folder / name).stat().st_size for name in blobs}


def run_onnx(path: Path, inputs: torch.Tensor) -> torch.Tensor:
    """The ONNX model's outputs on ``inputs``, computed by onnxruntime on the CPU."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": inputs.detach().cpu().float().numpy()})[0])
