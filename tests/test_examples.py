"""The runnable examples of examples/: ADMM through the callback in user-style LightningModules on
networks the suite does not define (torchvision's ResNet-18, a Transformer encoder). Each takes
about half a minute on one CPU thread (speed is the benchmarks' business, never a test's)."""

from __future__ import annotations

import importlib.util

from conftest import ROOT


def load(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_resnet18_with_filter_sparsity_learns_drops_half_the_block_filters_and_shrinks_exactly():
    out = load("resnet18_filter").main()
    assert out["dead_filters"] == out["block_conv1_filters"] // 2 == 960  # whole filters, exactly half
    assert out["test_acc"] > 0.9 and out["kept"] < 0.35
    # the exported ResNet without those channels computes what the masked one does
    assert out["shrunk_max_abs_diff"] < 1e-4 and out["params_shrunk"] < 0.55 * out["params"]


def test_a_transformer_pruned_to_2_of_4_keeps_exactly_2_in_every_group_of_4():
    out = load("transformer_nm").main()
    assert out["layers"] == 7 and out["groups_with_exactly_2"] == out["groups"] > 2000
    assert out["nonzero_outside_masks"] == 0 and out["test_acc"] > 0.9
