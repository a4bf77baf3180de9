import itertools

import pytest
import torch
from torch.nn.utils import prune

from admm_pruning.sparsity.projections import keep_count, project_topk, topk_mask


def torch_l1_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """torch's own magnitude pruning, asked to prune numel - k entries."""
    module = torch.nn.Linear(1, 1, bias=False)
    module.weight = torch.nn.Parameter(w.clone())
    prune.l1_unstructured(module, "weight", amount=w.numel() - k)
    return module.weight_mask.bool()


@pytest.mark.parametrize("keep", [0.009, 0.04, 0.2, 0.5, 0.93])
@pytest.mark.parametrize("shape", [(300, 784), (50, 20, 5, 5), (10, 100)])
def test_topk_matches_torch_l1_unstructured(shape, keep):
    w = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    k = keep_count(w.numel(), keep)
    mask = topk_mask(w, k)
    assert int(mask.sum()) == k
    assert torch.equal(mask, torch_l1_mask(w, k))


def test_ties_keep_exactly_k_and_the_same_magnitudes_as_torch():
    w = torch.tensor([3.0, -1.0, 1.0, -3.0, 2.0, 1.0, -2.0, 1.0, 0.0, 3.0])
    for k in range(1, 11):
        mask = topk_mask(w, k)
        assert int(mask.sum()) == k
        ours = w[mask].abs().sort().values
        theirs = w[torch_l1_mask(w, k)].abs().sort().values
        assert torch.equal(ours, theirs)
        assert torch.equal(ours, w.abs().sort(descending=True).values[:k].sort().values)
    # deterministic tie-break: lower index wins among equal magnitudes
    assert topk_mask(w, 4).nonzero().flatten().tolist() == [0, 3, 4, 9]


def stable_sort_mask(w: torch.Tensor, k: int) -> torch.Tensor:
    """The definition: the first k of a stable descending sort of the magnitudes."""
    order = torch.argsort(w.abs().flatten(), descending=True, stable=True)
    mask = torch.zeros(w.numel(), dtype=torch.bool)
    mask[order[:k]] = True
    return mask.view_as(w)


@pytest.mark.parametrize("seed", range(4))
def test_topk_mask_is_the_stable_sort_prefix_with_many_ties(seed):
    g = torch.Generator().manual_seed(seed)
    w = torch.randint(-6, 7, (40, 25), generator=g).float() / 4  # 13 magnitudes over 1,000 weights
    for k in (0, 1, 7, 77, 500, 999, 1000):
        assert torch.equal(topk_mask(w, k), stable_sort_mask(w, k))


def test_topk_mask_keeps_exactly_k_with_nan_weights():
    w = torch.tensor([1.0, float("nan"), 3.0, 2.0, 0.5, float("inf"), float("nan")])
    for k in range(8):
        assert torch.equal(topk_mask(w, k), stable_sort_mask(w, k))


def test_keep_one_is_identity():
    w = torch.randn(7, 5)
    assert torch.equal(project_topk(w, 1.0), w)


def test_keep_that_rounds_to_zero_keeps_the_largest_weight():
    w = torch.tensor([[0.1, -5.0], [0.3, 0.2]])
    assert keep_count(4, 0.01) == 1
    out = project_topk(w, 0.01)
    assert torch.equal(out, torch.tensor([[0.0, -5.0], [0.0, 0.0]]))


@pytest.mark.parametrize("keep", [0.0, -0.1, 1.5])
def test_keep_outside_unit_interval_is_refused(keep):
    with pytest.raises(ValueError, match="keep fraction"):
        keep_count(100, keep)


def test_projection_is_the_euclidean_projection_brute_force():
    g = torch.Generator().manual_seed(3)
    for _ in range(20):
        w = torch.randn(6, generator=g)
        for k in range(1, 7):
            best = min(
                (torch.sum((w - w * torch.tensor([i in s for i in range(6)])) ** 2).item(), s)
                for s in itertools.combinations(range(6), k)
            )[0]
            ours = torch.sum((w - project_topk(w, k / 6)) ** 2).item()
            assert ours == pytest.approx(best, abs=1e-7)


@pytest.mark.parametrize("sparsity, towers_groups", [("shape", 2 * 3 * 2 * 2), ("channel", 2 * 3)])
def test_a_grouped_convs_channel_and_shape_groups_are_per_tower(sparsity, towers_groups):
    """groups=2 (CaffeNet's conv2/4/5): a group is one tower's column (shape) or input channel,
    never column j of both towers at once. The projection is the Euclidean one over those
    groups (brute force over every choice of k of them), and the Conv2d's masks follow it."""
    from admm_pruning.sparsity.masks import magnitude_masks
    from admm_pruning.sparsity.projections import group_count, project

    conv = torch.nn.Conv2d(6, 4, 2, groups=2, bias=False)  # weight (4, 3, 2, 2): towers of 2 filters
    assert group_count(conv.weight.shape, sparsity, groups=2) == towers_groups
    w = torch.randn(4, 3, 2, 2, generator=torch.Generator().manual_seed(0))
    towers = w.reshape(2, 2, 3, 2, 2)
    dims = (0, 2, 3, 4) if sparsity == "shape" else (0, 2)
    members = [tuple(i) for i in itertools.product(*(range(towers.shape[d]) for d in dims))]

    def indicator(chosen):
        m = torch.zeros_like(towers, dtype=torch.bool)
        for g in chosen:
            index = [slice(None)] * 5
            for d, i in zip(dims, g, strict=True):
                index[d] = i
            m[tuple(index)] = True
        return m.reshape(w.shape)

    for k in (1, 2, 3):
        best = min(torch.sum((w - w * indicator(s)) ** 2).item() for s in itertools.combinations(members, k))
        ours = project(w, k / towers_groups, sparsity, groups=2)
        assert torch.sum((w - ours) ** 2).item() == pytest.approx(best, abs=1e-6)
        with torch.no_grad():
            conv.weight.copy_(w)
        mask = magnitude_masks(torch.nn.Sequential(conv), {"0": k / towers_groups}, {"0": sparsity})["0"]
        assert torch.equal(mask, ours != 0)
        # the two towers' masks differ: each chose its own columns
        if k == 1:
            assert mask[:2].any() != mask[2:].any()


def test_admm_projects_a_grouped_conv_per_tower():
    """ADMMModule reads each layer's towers from the model: Z^0 of a groups=2 conv under shape
    sparsity is the per-tower projection of W^0."""
    from admm_pruning.pruners.admm import ADMMModule
    from admm_pruning.sparsity.admm import ADMMSchedule
    from admm_pruning.sparsity.projections import project

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(6, 4, 2, groups=2), torch.nn.Flatten())
    module = ADMMModule(model, ADMMSchedule(), {"0": 0.25}, 10, {"0": "shape"}, num_classes=4)
    assert torch.equal(module.admm.z("0"), project(model[0].weight.detach(), 0.25, "shape", groups=2))
