"""Structured sparsity (ADAM-ADMM): exact group projections, the admm pruner's per-layer
``pruner.sparsity`` option end to end, and its checks."""

import itertools
import json
import re
from pathlib import Path

import pytest
import torch

from admm_pruning.export.shrink import shrink
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.models.layers import prunable_layers
from admm_pruning.models.lenet import LeNet5
from admm_pruning.pipeline import run_experiment
from admm_pruning.sparsity.admm import ADMMSchedule, ADMMState
from admm_pruning.sparsity.masks import magnitude_masks
from admm_pruning.sparsity.projections import group_count, group_dims, group_mask, keep_count, project
from admm_pruning.sparsity.structured import SparsityError, check_sparsity
from conftest import TINY, compose_cfg

# Brute-force group definitions, written out by hand (independent of projections.group_dims):
# each maps a weight to the list of index expressions of its groups.
GROUPS = {
    "filter": lambda s: [(i,) for i in range(s[0])],
    "row": lambda s: [(i,) for i in range(s[0])],
    "channel": lambda s: [(slice(None), c) for c in range(s[1])],
    "column": lambda s: [(slice(None), c) for c in range(s[1])],
    "shape": lambda s: [(slice(None), c, i, j) for c in range(s[1]) for i in range(s[2]) for j in range(s[3])],
    "unstructured": lambda s: list(itertools.product(*(range(n) for n in s))),
}
CASES = [("filter", (4, 3, 2, 2)), ("channel", (3, 4, 2, 2)), ("shape", (3, 2, 2, 2)),
         ("unstructured", (2, 2, 2, 2)), ("row", (5, 3)), ("column", (3, 5)), ("unstructured", (3, 3))]


def brute_force(w: torch.Tensor, sparsity: str, k: int) -> tuple[float, torch.Tensor]:
    """The feasible point nearest to w: try every set of k groups (ties: first found)."""
    groups = GROUPS[sparsity](w.shape)
    best = (float("inf"), None)
    for chosen in itertools.combinations(groups, k):
        mask = torch.zeros_like(w, dtype=torch.bool)
        for idx in chosen:
            mask[idx] = True
        dist = torch.sum((w - w * mask) ** 2).item()
        if dist < best[0]:
            best = (dist, mask)
    return best


@pytest.mark.parametrize("sparsity, shape", CASES)
def test_group_projection_is_the_euclidean_projection_brute_force(sparsity, shape):
    g = torch.Generator().manual_seed(7)
    n_groups = len(GROUPS[sparsity](shape))
    assert group_count(shape, sparsity) == n_groups
    for _ in range(3):
        w = torch.randn(*shape, generator=g)
        for k in range(1, n_groups + 1):
            dist, best = brute_force(w, sparsity, k)
            mask = group_mask(w, sparsity, k)
            assert torch.equal(mask, best)  # continuous random weights: the minimiser is unique
            ours = torch.sum((w - project(w, k / n_groups, sparsity)) ** 2).item()
            assert ours == pytest.approx(dist, abs=1e-6)


@pytest.mark.parametrize("sparsity, shape", CASES)
def test_group_mask_keeps_exactly_k_whole_groups(sparsity, shape):
    w = torch.randn(*shape)
    groups = GROUPS[sparsity](shape)
    for k in range(1, len(groups) + 1):
        mask = group_mask(w, sparsity, k)
        whole = [bool(mask[idx].all()) for idx in groups]
        assert sum(whole) == k
        assert all(whole[i] or not mask[idx].any() for i, idx in enumerate(groups))


def test_ties_go_to_the_lower_group_index():
    w = torch.ones(4, 2, 3, 3)  # every filter, channel and position has the same norm
    assert group_mask(w, "filter", 2)[:, 0, 0, 0].tolist() == [True, True, False, False]
    assert group_mask(w, "channel", 1)[0, :, 0, 0].tolist() == [True, False]
    shape = group_mask(w, "shape", 4)[0]
    assert shape.flatten().nonzero().flatten().tolist() == [0, 1, 2, 3]
    assert torch.equal(group_mask(w, "shape", 4), group_mask(w.clone(), "shape", 4))


def test_keep_counts_groups_and_never_zero():
    w = torch.randn(20, 1, 5, 5)
    assert int(project(w, 0.5, "filter").flatten(1).any(1).sum()) == 10
    assert int(project(w, 0.01, "filter").flatten(1).any(1).sum()) == keep_count(20, 0.01) == 1
    lin = torch.randn(500, 800)
    assert int(project(lin, 0.3, "row").any(1).sum()) == 150
    assert int(project(lin, 0.3, "column").any(0).sum()) == 240


@pytest.mark.parametrize("sparsity, ndim", [("filter", 2), ("row", 4), ("shape", 2), ("column", 4), ("bogus", 4)])
def test_a_type_that_does_not_fit_the_weight_is_refused(sparsity, ndim):
    with pytest.raises(ValueError, match=f"sparsity '{sparsity}' does not apply"):
        group_dims(sparsity, ndim)


def test_admm_state_projects_z_onto_the_structured_set_and_keeps_it_there():
    g = torch.Generator().manual_seed(0)
    conv, fc = torch.randn(8, 3, 3, 3, generator=g), torch.randn(6, 10, generator=g)
    s = ADMMState({"conv": conv, "fc": fc}, {"conv": 0.25, "fc": 0.1}, ADMMSchedule(rho=1e-3),
                  sparsity={"conv": "filter"})
    assert s.k == {"conv": 2, "fc": 6}  # 2 of 8 filters; fc unstructured: 6 of 60 entries
    assert torch.equal(s.z("conv"), project(conv, 0.25, "filter"))
    assert int(s.z("conv").flatten(1).any(1).sum()) == 2
    assert torch.equal(s.z("fc"), project(fc, 0.1))
    for _ in range(3):
        w = {"conv": torch.randn(8, 3, 3, 3, generator=g), "fc": torch.randn(6, 10, generator=g)}
        u = {n: s.u(n).clone() for n in w}
        s.update(w)
        assert torch.equal(s.z("conv"), project(w["conv"] + u["conv"], 0.25, "filter"))  # Z-step
        assert torch.equal(s.z("fc"), project(w["fc"] + u["fc"], 0.1))
        assert int(s.z("conv").flatten(1).any(1).sum()) == 2
        assert torch.allclose(s.u("conv"), u["conv"] + w["conv"] - s.z("conv"), atol=1e-6)  # U-step


def test_hard_prune_masks_mix_structured_and_unstructured_layers():
    torch.manual_seed(0)
    model = LeNet5()
    keep = {"conv1": 0.5, "conv2": 0.2, "fc1": 0.3, "fc2": 0.07}
    masks = magnitude_masks(model, keep, {"conv1": "filter", "conv2": "shape", "fc1": "row"})
    assert masks["conv1"].flatten(1).all(1).sum() == 10 and masks["conv1"].sum() == 10 * 25
    conv2 = masks["conv2"]
    assert torch.equal(conv2, conv2[:1].expand_as(conv2)) and int(conv2[0].sum()) == 100  # 100 of 500 columns
    assert int(masks["fc1"].all(1).sum()) == 150 and int(masks["fc1"].sum()) == 150 * 800
    assert int(masks["fc2"].sum()) == keep_count(5000, 0.07)  # unstructured


@pytest.mark.parametrize("sparsity, message", [
    ({"conv9": "filter"}, "pruner.sparsity.conv9=filter: unknown layer 'conv9'"),
    ({"conv1": "rows"}, "pruner.sparsity.conv1=rows: unknown sparsity type for Conv2d layer conv1; "
                        "choose from unstructured, filter, channel, shape"),
    ({"fc1": "filter"}, "pruner.sparsity.fc1=filter: unknown sparsity type for Linear layer fc1; "
                        "choose from unstructured, row, column"),
    ({"fc2": "row"}, "pruner.sparsity.fc2=row: layer fc2 has no prune.keep entry"),
])
def test_check_sparsity_names_the_key_and_value(sparsity, message):
    with pytest.raises(SparsityError, match=re.escape(message)):
        check_sparsity(prunable_layers(LeNet5()), {"conv1": 0.5, "fc1": 0.1}, sparsity)


def structured_cfg(fake_data_dir, out_dirs, *extra, experiment="lenet5_admm_structured"):
    return compose_cfg([f"experiment={experiment}", "data=mnist", f"data.data_dir={fake_data_dir}",
                        "data.verify_md5=false",
                        "data.val_size=200", "data.download=false", *TINY, *out_dirs, *extra])


def test_bad_sparsity_fails_before_any_folder_is_written(fake_data_dir, out_dirs, tmp_path):
    cfg = structured_cfg(fake_data_dir, out_dirs, "pruner.sparsity.conv2=filters")
    with pytest.raises(ConfigError, match="pruner.sparsity.conv2=filters: unknown sparsity type"):
        run_experiment(cfg)
    assert not (tmp_path / "artifacts").exists() and not (tmp_path / "results").exists()


def test_structured_conv_only_run_end_to_end(fake_data_dir, out_dirs, tmp_path):
    """Filter-pruned conv layers, fc layers without a keep entry: the fc layers stay dense and
    count in the compression; the final masks are whole filters; FLOPs land in the summary."""
    s = run_experiment(structured_cfg(fake_data_dir, out_dirs, experiment="lenet5_admm_structured_conv_only"))
    assert s["sparsity"] == {"conv1": "filter", "conv2": "filter"}
    assert s["per_layer"]["fc1"] == {"total": 400000, "nonzero": 400000, "kept": 1.0}
    assert s["per_layer"]["conv1"]["nonzero"] == 10 * 25 and s["per_layer"]["conv2"]["nonzero"] == 15 * 500
    assert s["compression"] == pytest.approx(430500 / (250 + 7500 + 400000 + 5000))
    assert s["conv_compression"] == pytest.approx(25500 / 7750)
    stage = Path(s["stage_dirs"]["retrain"])
    masks = torch.load(stage / "masks.pt", weights_only=True)
    for name, filters in (("conv1", 10), ("conv2", 15)):
        per_filter = masks[name].flatten(1)
        assert int(per_filter.all(1).sum()) == filters and not (per_filter.any(1) & ~per_filter.all(1)).any()
    f = s["flops"]
    assert f["dense"] == 4586000
    # shrunk: conv1 10 filters, conv2 15 filters on 10 channels, fc1 on 15 x 16 inputs, fc2 as is
    # (fc units are all live: dense fc layers)
    assert f["per_layer"]["conv1"]["shrunk"] == 2 * 10 * 25 * 24 * 24
    assert f["per_layer"]["conv2"]["shrunk"] == 2 * 15 * 10 * 25 * 8 * 8
    assert f["per_layer"]["fc1"]["shrunk"] == 2 * 240 * 500
    assert f["theoretical_speedup"] == pytest.approx(f["dense"] / f["remaining"])
    out = tmp_path / "results" / "lenet5_admm_structured_conv_only" / "mnist" / "seed0"
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["flops"]["remaining"] == f["remaining"] and "FlopCounterMode" in on_disk["flops"]["flops_definition"]
    table = (out / "table.md").read_text()
    assert "Conv-layer compression" in table and "Theoretical speedup" in table
    # the final model shrinks to a smaller dense model with the same outputs
    model = LeNet5().eval()
    model.load_state_dict(torch.load(stage / "weights.pt", weights_only=True))
    x = torch.randn(4, 1, 28, 28)
    small = shrink(model, x[:1])
    assert small.kept["conv2"] == {"out": [15, 50], "in": [10, 10]}
    with torch.no_grad():
        assert torch.allclose(small.module()(x), model(x), atol=1e-5)
