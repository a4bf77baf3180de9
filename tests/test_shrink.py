"""Physical shrinking: structurally pruned models become smaller dense models with the same outputs."""

import os
import shutil
import subprocess
import sys

import pytest
import torch
from torch import nn

from admm_pruning.export.layers import ColumnConv2d, load_shrunk
from admm_pruning.export.shrink import ShrinkError, shrink
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.report.flops import layer_flops
from admm_pruning.sparsity.masks import apply_masks, magnitude_masks
from conftest import ROOT


def randomise_biases(model: nn.Module) -> None:
    """Nonzero biases everywhere: a removed filter still outputs its bias, which must be folded."""
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=g))


def pruned_lenet5() -> LeNet5:
    torch.manual_seed(0)
    model = LeNet5()
    randomise_biases(model)
    keep = {"conv1": 0.5, "conv2": 0.3, "fc1": 0.2, "fc2": 0.5}
    apply_masks(model, magnitude_masks(model, keep, {"conv1": "filter", "conv2": "filter", "fc1": "row"}))
    return model.eval()


def same_outputs(a: nn.Module, b: nn.Module, shape: tuple[int, ...] = (1, 28, 28)) -> bool:
    x = torch.randn(16, *shape, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        return torch.allclose(a(x), b(x), atol=1e-5, rtol=1e-5)


def test_lenet5_filter_and_row_pruned_shrinks_to_a_smaller_model_with_the_same_outputs():
    model = pruned_lenet5()
    small = shrink(model, torch.zeros(1, 1, 28, 28))
    net = small.module()
    assert net.conv1.weight.shape == (10, 1, 5, 5)
    assert net.conv2.weight.shape == (15, 10, 5, 5)  # conv1's removed filters left conv2 too
    assert net.fc1.weight.shape == (100, 15 * 4 * 4)  # 15 channels x 4x4 flattened features
    assert net.fc2.weight.shape[1] == 100  # fc1's removed rows left fc2 too
    assert small.kept["fc1"] == {"out": [100, 500], "in": [240, 240]}
    assert same_outputs(model, net)


def test_the_bias_of_removed_filters_is_folded_into_the_next_layer():
    model = pruned_lenet5()
    small = shrink(model, torch.zeros(1, 1, 28, 28))
    dead = ~model.conv1.weight.flatten(1).any(1)
    assert dead.sum() == 10 and model.conv1.bias[dead].abs().min() > 0  # they output a nonzero constant
    assert not torch.allclose(small.state["conv2.bias"], model.conv2.bias[model.conv2.weight.flatten(1).any(1)])
    unfolded = small.module()
    with torch.no_grad():
        unfolded.conv2.bias.copy_(model.conv2.bias[model.conv2.weight.flatten(1).any(1)])
    assert not same_outputs(model, unfolded)


class ConvBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.BatchNorm2d(6), nn.ReLU(),
            nn.Flatten(), nn.Linear(6 * 4 * 4, 5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def test_sequential_conv_bn_relu_conv_flatten_linear():
    torch.manual_seed(1)
    model = ConvBN()
    randomise_biases(model)
    with torch.no_grad():  # non-trivial BatchNorm statistics and affine parameters
        for bn in (model.features[1], model.features[4]):
            bn.running_mean.normal_()
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.normal_()
    apply_masks(model, magnitude_masks(model, {"features.0": 0.5, "features.3": 0.5},
                                       {"features.0": "filter", "features.3": "filter"}))
    model.eval()
    small = shrink(model, torch.zeros(1, 3, 8, 8))
    net = small.module()
    assert net.features_0.weight.shape == (4, 3, 3, 3) and net.features_1.num_features == 4
    assert net.features_3.weight.shape == (3, 4, 3, 3) and net.features_4.running_mean.shape == (3,)
    assert net.features_7.weight.shape == (5, 3 * 16)
    assert same_outputs(model, net, (3, 8, 8))


def test_channel_pruning_of_the_next_layer_removes_the_filters_it_no_longer_reads():
    torch.manual_seed(2)
    model = LeNet5()
    randomise_biases(model)
    apply_masks(model, magnitude_masks(model, {"conv2": 0.25}, {"conv2": "channel"}))  # 5 of 20 inputs
    model.eval()
    small = shrink(model, torch.zeros(1, 1, 28, 28))
    assert small.kept["conv1"]["out"] == [5, 20] and small.kept["conv2"]["in"] == [5, 5]
    assert same_outputs(model, small.module())


def test_column_pruned_linear_selects_its_inputs():
    torch.manual_seed(3)
    model = LeNet300()
    randomise_biases(model)
    apply_masks(model, magnitude_masks(model, {"fc1": 0.1, "fc2": 0.2}, {"fc1": "column", "fc2": "column"}))
    model.eval()
    small = shrink(model, torch.zeros(1, 1, 28, 28))
    net = small.module()
    assert net.fc1.weight.shape == (60, 78)  # 78 of 784 pixels read; fc2 reads 60 of fc1's 300 units
    assert [type(m).__name__ for m in net] == ["Flatten", "Select", "Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert same_outputs(model, net)


def test_a_padded_conv_keeps_a_dead_filter_whose_constant_it_cannot_fold():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3, padding=1), nn.Flatten(),
                          nn.Linear(2 * 36, 3))
    with torch.no_grad():
        model[0].weight[0].zero_()
        model[0].bias[0] = 1.0  # relu(1) = 1: a nonzero constant, zero-padded at the borders
        model[0].weight[1].zero_()
        model[0].bias[1] = -1.0  # relu(-1) = 0: nothing to fold, so it can go
    small = shrink(model.eval(), torch.zeros(1, 1, 8, 8))
    assert small.kept["0"]["out"] == [3, 4]
    assert same_outputs(model, small.module(), (1, 8, 8))


def test_exported_model_reloads_without_the_suite(tmp_path):
    model = pruned_lenet5()
    small = shrink(model, torch.zeros(1, 1, 28, 28))
    small.save(tmp_path / "shrunk")
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.save({"x": x, "y": model(x)}, tmp_path / "io.pt")
    assert same_outputs(model, load_shrunk(tmp_path / "shrunk"))
    # a fresh interpreter with only export/layers.py copied beside it: torch alone, no admm_pruning package
    alone = tmp_path / "standalone"
    alone.mkdir()
    shutil.copy(ROOT / "src" / "admm_pruning" / "export" / "layers.py", alone / "layers.py")
    code = f"""
import sys, torch, layers
assert "admm_pruning" not in sys.modules
io = torch.load({str(tmp_path / "io.pt")!r})
net = layers.load_shrunk({str(tmp_path / "shrunk")!r})
assert torch.allclose(net(io["x"]), io["y"], atol=1e-5), "outputs differ"
print(sum(p.numel() for p in net.parameters()))
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=alone, capture_output=True, text=True,
                          timeout=120, env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) < sum(p.numel() for p in LeNet5().parameters())


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


def test_a_non_chain_model_is_refused_not_shrunk_wrongly():
    with pytest.raises(ShrinkError, match="not a chain"):
        shrink(Residual(), torch.zeros(1, 2, 5, 5))


@pytest.mark.parametrize("kernel, stride, padding, dilation, size", [
    ((5, 5), (1, 1), (0, 0), (1, 1), (12, 12)),
    ((3, 3), (2, 1), (1, 2), (1, 1), (9, 10)),
    ((3, 2), (1, 2), (2, 1), (2, 1), (11, 8)),
])
def test_column_conv_computes_the_masked_conv(kernel, stride, padding, dilation, size):
    g = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(4, 6, kernel, stride=stride, padding=padding, dilation=dilation)
    cols = 4 * kernel[0] * kernel[1]
    keep = torch.randperm(cols, generator=g)[: cols // 3].sort().values
    mask = torch.zeros(cols, dtype=torch.bool)
    mask[keep] = True
    with torch.no_grad():
        conv.weight.mul_(mask.view(1, 4, *kernel))
    col = ColumnConv2d(4, 6, list(kernel), list(stride), list(padding), list(dilation), True, keep.tolist())
    col.load_state_dict({"weight": conv.weight.reshape(6, -1)[:, keep], "bias": conv.bias.detach()})
    for h, w in (size, (size[0] + 3, size[1] + 1)):  # the gather index is cached per input size
        x = torch.randn(3, 4, h, w, generator=g)
        with torch.no_grad():
            out = col(x)
            assert torch.allclose(out, conv(x), atol=1e-5)
            # written in channels-last order, the layout the next pooling runs fastest in
            assert out.is_contiguous(memory_format=torch.channels_last)
            assert torch.allclose(col(x.contiguous(memory_format=torch.channels_last)), out)


def test_a_shape_pruned_conv_runs_on_its_used_columns_only(tmp_path):
    torch.manual_seed(0)
    model = LeNet5()
    randomise_biases(model)
    apply_masks(model, magnitude_masks(model, {"conv2": 0.2}, {"conv2": "shape"}))  # 100 of 500 columns
    model.eval()
    example = torch.zeros(1, 1, 28, 28)
    small = shrink(model, example)
    net = small.module()
    assert small.kept["conv2"]["columns"] == [100, 500] and "columns" not in small.kept["conv1"]
    assert isinstance(net.conv2, ColumnConv2d) and net.conv2.weight.shape == (50, 100)
    assert same_outputs(model, net)
    dense, shrunk = layer_flops(LeNet5(), example), layer_flops(net, example)
    assert shrunk["conv2"] == dense["conv2"] // 5 and shrunk["conv1"] == dense["conv1"]
    small.save(tmp_path / "shrunk")
    assert same_outputs(model, load_shrunk(tmp_path / "shrunk"))
    # the threshold: 0 makes every conv a ColumnConv2d (a dense baseline on the same kernels), > 1 none
    every = shrink(model, example, min_column_saving=0.0).module()
    assert isinstance(every.conv1, ColumnConv2d) and every.conv1.weight.shape == (20, 25)
    assert same_outputs(model, every)
    assert isinstance(shrink(model, example, min_column_saving=1.1).module().conv2, nn.Conv2d)


def test_caffenet_with_grouped_convs_and_lrn_shrinks_to_the_same_outputs(tmp_path):
    """CaffeNet's towers (conv2/4/5, groups=2) and LRN used to be refused; now a grouped conv keeps
    its filters and inputs, and so do its neighbours (conv3's dead filters stay: they feed grouped
    conv4), LRN's producer keeps its channels, and the rest shrinks: fc6's and fc7's dead rows go."""
    from admm_pruning.models.alexnet import CaffeNet
    from admm_pruning.sparsity.masks import apply_masks, magnitude_masks

    torch.manual_seed(0)
    model = CaffeNet(num_classes=10).eval()
    keep = {"conv2": 0.5, "conv3": 0.5, "conv4": 0.5, "fc6": 0.02, "fc7": 0.05}
    apply_masks(model, magnitude_masks(model, keep, {"conv2": "shape", "conv3": "filter", "conv4": "filter",
                                                     "fc6": "row", "fc7": "row"}))
    x = torch.randn(3, 3, 67, 67)
    small = shrink(model, x[:1])
    with torch.no_grad():
        assert torch.allclose(small.module()(x), model(x), atol=1e-5)
    kept = small.kept
    assert kept["conv2"]["out"] == [256, 256] and kept["conv4"]["out"] == [384, 384]  # grouped: whole
    assert kept["conv1"]["out"] == [96, 96]  # through LRN
    assert kept["conv3"]["out"] == [384, 384]  # half its filters are dead, but conv4 is grouped
    assert kept["fc6"]["out"][0] < 4096 and kept["fc7"]["out"][0] < 4096
    from admm_pruning.report.verify import verify_export

    report = verify_export(model, x, tmp_path)  # the export a pipeline run writes, reloaded and checked
    assert report["exported"] and report["formats"]["safetensors"]["max_abs_diff"] < 1e-4
    assert report["parameters"] < report["dense_parameters"] / 10
