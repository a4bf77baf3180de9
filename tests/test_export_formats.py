"""The deployable export: safetensors + a JSON architecture rebuilt with plain torch.nn, and ONNX run
in onnxruntime, each giving the pruned model's outputs."""

import json
from collections import OrderedDict
from pathlib import Path

import pytest
import safetensors.torch
import torch
from torch import nn

from admm_pruning.export import formats
from admm_pruning.export.formats import build_portable, load_portable, run_onnx, save_portable
from admm_pruning.export.shrink import shrink
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.report import verify
from admm_pruning.report.sparsity import SparsityMismatchError
from admm_pruning.sparsity.masks import apply_masks, magnitude_masks

# The ADMM papers' per-layer keep fractions (71.2x LeNet-5, 22.9x LeNet-300-100).
LENET5_KEEP = {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}
LENET300_KEEP = {"fc1": 0.04, "fc2": 0.07, "fc3": 0.12}


def pruned(name: str) -> nn.Module:
    """A small pruned network: the TF LeNet-5 (model=lenet5), the same with conv2 pruned shape-wise
    (a ColumnConv2d once shrunk), or LeNet-300-100."""
    torch.manual_seed(0)
    if name == "lenet300":
        model = LeNet300()
        apply_masks(model, magnitude_masks(model, LENET300_KEEP))
    else:
        model = LeNet5(conv_relu=True, init="tf")
        kinds = {"conv2": "shape"} if name == "lenet5_shape" else {}
        apply_masks(model, magnitude_masks(model, {**LENET5_KEEP, "conv2": 0.2} if kinds else LENET5_KEEP, kinds))
    return model.eval()


def images(n: int = 8) -> torch.Tensor:
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(1))


def export(model: nn.Module, folder: Path) -> dict[str, int]:
    return save_portable(shrink(model, images(1)), folder)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return (a - b).abs().max().item()


NETS = ["lenet5", "lenet5_shape", "lenet300"]


@pytest.mark.parametrize("name", NETS)
def test_the_onnx_export_runs_in_onnxruntime_with_pytorchs_outputs(name, tmp_path):
    model = pruned(name)
    sizes = export(model, tmp_path)
    assert sizes == {f: (tmp_path / f).stat().st_size for f in ("architecture.json", "model.safetensors",
                                                                 "model.onnx")}
    x = images(8)  # exported with a batch of 1: the batch axis is dynamic
    with torch.no_grad():
        assert max_diff(run_onnx(tmp_path / "model.onnx", x), model(x)) < 1e-4


def rebuild_without_the_package(folder: Path) -> nn.Sequential:
    """A third party's loader, written from the architecture file's "ops" alone: torch.nn only."""

    class IndexSelect(nn.Module):
        def __init__(self, dim: int, index: torch.Tensor) -> None:
            super().__init__()
            self.dim = dim
            self.register_buffer("index", index)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.index_select(x, self.dim, self.index)

    arch = json.loads((folder / "architecture.json").read_text())
    tensors = safetensors.torch.load_file(folder / arch["weights"])
    net = nn.Sequential(OrderedDict(
        (layer["name"], IndexSelect(layer["args"]["dim"], tensors[f"{layer['name']}.index"])
         if layer["type"] == "IndexSelect" else getattr(nn, layer["type"])(**layer["args"]))
        for layer in arch["layers"]))
    net.load_state_dict(tensors)
    return net.eval()


@pytest.mark.parametrize("name", NETS)
def test_safetensors_and_json_rebuild_the_model_with_plain_torch_nn(name, tmp_path):
    model = pruned(name)
    export(model, tmp_path)
    x = images(8)
    with torch.no_grad():
        for net in (load_portable(tmp_path), rebuild_without_the_package(tmp_path)):
            assert all(type(m).__module__.startswith("torch.nn") or type(m).__name__ == "IndexSelect"
                       for m in net)
            assert max_diff(net(x), model(x)) < 1e-4


def test_a_shape_pruned_conv_stores_only_its_kept_columns(tmp_path):
    export(pruned("lenet5_shape"), tmp_path)
    arch = json.loads((tmp_path / "architecture.json").read_text())
    types = [layer["type"] for layer in arch["layers"] if layer["name"].startswith("conv2")]
    assert types == ["Unfold", "IndexSelect", "Conv1d", "Unflatten"]
    tensors = safetensors.torch.load_file(tmp_path / "model.safetensors")
    assert tensors["conv2.weight"].shape == (50, 100, 1)  # 20% of conv2's 500 (c, kh, kw) columns
    assert tensors["conv2_columns.index"].tolist() == sorted(set(tensors["conv2_columns.index"].tolist()))


def test_an_architecture_file_may_name_only_the_listed_layer_types():
    with pytest.raises(ValueError, match="'Transformer' is not one of"):
        build_portable({"layers": [{"name": "t", "type": "Transformer", "args": {}}]}, {})


def test_verify_export_writes_and_checks_every_format(tmp_path):
    model = pruned("lenet300")
    e = verify.verify_export(model, images(16), tmp_path)
    assert set(e["formats"]) == {"safetensors", "onnx"}
    assert all(f["max_abs_diff"] < 1e-4 for f in e["formats"].values())
    assert e["files"]["model.onnx"] == (tmp_path / "model.onnx").stat().st_size > 0


def test_an_onnx_export_that_differs_from_the_pruned_model_fails_the_check(tmp_path, monkeypatch):
    monkeypatch.setattr(verify, "run_onnx", lambda path, x: formats.run_onnx(path, x) + 1e-3)
    with pytest.raises(SparsityMismatchError, match="model.onnx.* differ from the pruned model's by up to 0.001"):
        verify.verify_export(pruned("lenet300"), images(16), tmp_path)


def test_a_network_onnx_cannot_express_is_exported_without_onnx_and_the_run_goes_on(tmp_path, monkeypatch):
    """AlexNet on small images pools adaptively to a size that does not divide its input, which the ONNX
    exporter refuses: the other formats are still written and checked, and the summary says why ONNX is absent."""
    def refuse(model, example, preprocessing=None):
        raise torch.onnx.errors.UnsupportedOperatorError("adaptive_avg_pool2d", 17, 18)

    monkeypatch.setattr(formats, "_onnx_bytes", refuse)
    e = verify.verify_export(pruned("lenet300"), images(16), tmp_path)
    assert e["formats"]["onnx"] == {"exported": False, "reason": "the exporter cannot express this network"}
    assert e["formats"]["safetensors"]["max_abs_diff"] < 1e-4
    assert "model.onnx" not in e["files"] and not (tmp_path / "model.onnx").exists()


def test_a_shape_pruned_conv_is_one_conv_in_the_onnx_graph(tmp_path):
    """onnxruntime runs an im2col written in Gathers slower than the whole dense network: the
    ONNX graph holds the shape-wise conv as one Conv (zeros in the removed columns), while the
    safetensors file keeps only the kept columns."""
    import collections

    import onnx

    export(pruned("lenet5_shape"), tmp_path)
    ops = collections.Counter(n.op_type for n in onnx.load(str(tmp_path / "model.onnx")).graph.node)
    assert ops["Conv"] == 2 and ops["Gather"] <= 1 and not {"Range", "Pad", "Transpose"} & set(ops), ops
    model = pruned("lenet5_shape")
    assert max_diff(run_onnx(tmp_path / "model.onnx", images()), model(images())) < 1e-4
