"""FLOP counts (dense, shrunk, nonzero) against hand counts, and the speedup report generator."""

import importlib.util
import json
import sys

import pytest
import torch

from admm_pruning.foundations.files import save_tensors
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.report.flops import flop_report, layer_flops
from admm_pruning.sparsity.masks import apply_masks, magnitude_masks, plain_state_dict
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("speedup", ROOT / "benchmarks" / "speedup.py")
speedup = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = speedup  # dataclasses look their module up here
_spec.loader.exec_module(speedup)

# 2 FLOPs per multiply-accumulate: conv = 2 * out * in * kh * kw * H_out * W_out, linear = 2 * in * out
LENET5_FLOPS = {"conv1": 2 * 20 * 1 * 25 * 24 * 24, "conv2": 2 * 50 * 20 * 25 * 8 * 8,
                "fc1": 2 * 800 * 500, "fc2": 2 * 500 * 10}
X = torch.zeros(1, 1, 28, 28)


def test_layer_flops_match_hand_counts():
    assert layer_flops(LeNet5(), X) == LENET5_FLOPS
    assert layer_flops(LeNet300(), X) == {"fc1": 2 * 784 * 300, "fc2": 2 * 300 * 100, "fc3": 2 * 100 * 10}


def test_unstructured_remaining_flops_are_dense_flops_times_kept_fraction():
    torch.manual_seed(0)
    model = LeNet5()
    keep = {"conv1": 0.6, "conv2": 0.5, "fc1": 0.5, "fc2": 0.5}  # dense enough that no unit dies
    apply_masks(model, magnitude_masks(model, keep))
    r = flop_report(model, X)
    assert r["shrunk"] == r["dense"] == sum(LENET5_FLOPS.values())
    for name, f in LENET5_FLOPS.items():
        assert r["per_layer"][name]["remaining"] == f * keep[name]
    assert r["theoretical_speedup"] == pytest.approx(r["dense"] / r["remaining"])
    assert r["shrunk_speedup"] == 1.0


def test_structured_flops_count_the_shrunk_model():
    torch.manual_seed(0)
    model = LeNet5()
    keep = {"conv1": 0.5, "conv2": 0.3, "fc1": 0.2}
    apply_masks(model, magnitude_masks(model, keep, {"conv1": "filter", "conv2": "filter", "fc1": "row"}))
    r = flop_report(model, X)
    expected = {"conv1": 2 * 10 * 1 * 25 * 24 * 24, "conv2": 2 * 15 * 10 * 25 * 8 * 8,
                "fc1": 2 * 240 * 100, "fc2": 2 * 100 * 10}
    assert {n: d["shrunk"] for n, d in r["per_layer"].items()} == expected
    assert r["remaining"] == r["shrunk"] == sum(expected.values())  # what is left is dense
    assert r["dense"] == sum(LENET5_FLOPS.values())
    assert r["theoretical_speedup"] == pytest.approx(sum(LENET5_FLOPS.values()) / sum(expected.values()))
    # conv weights left after shrinking: 10 x 25 + 15 x 10 x 25
    assert r["shrunk_conv_compression"] == pytest.approx(25500 / (250 + 3750))


@pytest.mark.parametrize("conv2, shrunk_layers", [
    ("filter", "conv1 10/20, 1/1; conv2 15/50, 10/10"),
    ("shape", "conv1 10/20, 1/1; conv2 50/50, 10/10"),
])
def test_speedup_report_for_a_stage_folder(tmp_path, conv2, shrunk_layers):
    """The benchmark on a saved run: FLOPs and the timed models in a generated report (no timing
    is asserted); a shape-wise run also times the dense network on the shrunk model's kernels."""
    torch.manual_seed(0)
    model = LeNet5()
    keep = {"conv1": 0.5, "conv2": 0.3, "fc1": 0.009, "fc2": 0.07}
    masks = magnitude_masks(model, keep, {"conv1": "filter", "conv2": conv2})
    apply_masks(model, masks)
    stage = tmp_path / "retrain-abc"
    save_tensors(stage / "weights.pt", plain_state_dict(model))
    save_tensors(stage / "masks.pt", masks)
    net = {"_target_": "admm_pruning.models.lenet.LeNet5", "num_classes": 10}
    (stage / "settings.json").write_text(json.dumps({"parent": {"parent": {"model": {"net": net}}}}))
    out = tmp_path / "speedup.md"
    text = speedup.main([str(stage), "--rounds", "1", "--warmup", "0", "--block-seconds", "0",
                         "--batches", "1", "4", "--out", str(out)])
    assert out.read_text() == text
    assert "| retrain-abc | cpu | 1 |" in text and "| retrain-abc | cpu | 4 |" in text
    assert "paper: ADAM-ADMM" in text and "| 10.5x |" in text and "2.6x and 3.65x" in text
    assert "| sparse ms | shrunk+sparse ms |" in text
    assert "Made on " in text and "; code " in text  # the machine and commit that timed it
    r = flop_report(model, X)
    assert f"{r['theoretical_speedup']:.2f}x" in text and shrunk_layers in text
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| retrain-abc | cpu |")]
    gemm = [(row[5], row[-1]) for row in rows]  # dense GEMM ms, shrunk vs dense GEMM
    assert all(row[4] != "-" for row in rows)  # dense in NCHW, beside dense in channels-last
    assert "Layout: models with convolutions and their inputs run channels-last" in text
    by_op = [line for line in text.splitlines() if line.startswith("| retrain-abc | 4 |")]
    assert [row.split(" | ")[2] for row in by_op] == ["dense", "shrunk"]  # time per op kind, both models
    assert all(float(row.split(" | ")[3]) > 0 for row in by_op)  # conv / GEMM ms
    if conv2 == "shape":
        assert all(ms != "-" and ratio.endswith("x |") for ms, ratio in gemm)
        # "dense GEMM" is the unpruned network (all 20 + 50 filters, every kernel column) on GEMM convs
        net = speedup.dense_gemm_model(speedup.load_run(stage), X)
        assert (net.conv1.weight.shape, net.conv2.weight.shape) == ((20, 25), (50, 500))
    else:
        assert gemm == [("-", "- |")] * 2
