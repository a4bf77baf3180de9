"""benchmarks/deploy.py on a small pruned LeNet-5: its three graphs compute what they should, every
table it writes is filled, and its sparse-kernel probe measures the layer it names."""

from __future__ import annotations

import importlib.util
import json
import sys

import torch

from admm_pruning.export.formats import save_portable
from admm_pruning.export.shrink import shrink
from admm_pruning.foundations.files import save_tensors
from admm_pruning.models.lenet import LeNet5
from admm_pruning.sparsity.masks import apply_masks, current_masks, magnitude_masks, plain_state_dict, remove_masks
from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
_spec = importlib.util.spec_from_file_location("deploy", ROOT / "benchmarks" / "deploy.py")
deploy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(deploy)

NET = {"_target_": "admm_pruning.models.lenet.LeNet5", "num_classes": 10, "conv_relu": True, "init": "tf"}
KEEP = {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}


def fake_run(tmp_path):
    torch.manual_seed(0)
    model = LeNet5(conv_relu=True, init="tf").eval()
    (tmp_path / "pretrain").mkdir()
    save_tensors(tmp_path / "pretrain" / "weights.pt", plain_state_dict(model))
    apply_masks(model, magnitude_masks(model, KEEP))
    masks = current_masks(model)
    save_portable(shrink(model, torch.rand(1, 1, 28, 28)), tmp_path / "export")
    remove_masks(model)
    (tmp_path / "retrain").mkdir()
    save_tensors(tmp_path / "retrain" / "weights.pt", plain_state_dict(model))
    save_tensors(tmp_path / "retrain" / "masks.pt", masks)
    summary = {"experiment": "toy", "pruner": "oneshot", "data": "none", "seed": 0, "final_acc": 0.5,
               "compression": 71.2, "sparsity": {k: "unstructured" for k in KEEP},
               "flops": {"input_shape": [1, 1, 28, 28], "theoretical_speedup": 12.0},
               "config": {"model": {"net": NET}}, "export_dir": str(tmp_path / "export"),
               "stage_dirs": {"pretrain": str(tmp_path / "pretrain"), "retrain": str(tmp_path / "retrain")}}
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(summary))
    return path, masks


def test_the_deploy_report_measures_all_three_graphs_and_the_sparse_kernels(tmp_path):
    path, masks = fake_run(tmp_path)
    result = deploy.measure(path, threads=1, rounds=1)
    assert result["max_diff"] < 1e-4  # masked and shrunk graphs: one function
    for batch in deploy.BATCHES:
        assert set(result["times"][batch]) == set(deploy.KINDS) and min(result["times"][batch].values()) > 0
    assert "Conv" in result["profile"]["dense"] and abs(sum(result["profile"]["shrunk"].values()) - 100) < 1e-6
    probe = result["probe"]
    assert probe["layer"] == "conv2"  # the layer with the most multiply-adds
    m, k, n = probe["shape"]
    assert n % deploy.BATCHES[-1] == 0 and probe["density"] > 0.05  # conv2 keeps 8%, more once shrunk
    text = deploy.render([result], 1, 7, "python benchmarks/deploy.py x", 0.0)
    assert "timed in 7 interleaved rounds" in text
    assert text.count("| toy oneshot x71.2") == len(deploy.BATCHES) + 1
    assert "Sparse kernels on the costliest conv" in text
