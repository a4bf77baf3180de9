"""The split probe (analysis/split_probe.py) and the progressive variant it chose."""

import pytest
import torch

from admm_pruning.analysis.split_probe import probe, splits, stage_context
from admm_pruning.models.layers import prunable_layers
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.plan import initial_targets
from admm_pruning.pruners.base import build_pruner
from admm_pruning.sparsity.projections import keep_count

SIZES = {n: m.weight.numel() for n, m in prunable_layers(LeNet5()).items()}


def sparse_lenet300() -> LeNet300:
    """fc1 keeps 10%, fc2 and fc3 half: a stand-in for a round's sparse model."""
    torch.manual_seed(0)
    model = LeNet300()
    with torch.no_grad():
        for name, keep in (("fc1", 0.1), ("fc2", 0.5), ("fc3", 0.5)):
            w = model.get_submodule(name).weight
            w.mul_(torch.rand_like(w) < keep)
    return model


def test_global_split_keeps_the_exact_count_and_only_surviving_weights():
    model = sparse_lenet300()
    held = {n: int((model.get_submodule(n).weight != 0).sum()) for n in ("fc1", "fc2", "fc3")}
    total = sum(model.get_submodule(n).weight.numel() for n in held)
    got = splits(model, {"fc1": 0.04, "fc2": 0.07, "fc3": 0.12}, 40.0)
    for keep in got.values():
        counts = {n: keep_count(model.get_submodule(n).weight.numel(), f) for n, f in keep.items()}
        assert sum(counts.values()) == round(total / 40.0)
    assert all(keep_count(model.get_submodule(n).weight.numel(), f) <= held[n]
               for n, f in got["global magnitude"].items())


def test_a_preset_keeping_more_than_the_stage_holds_is_refused():
    model = sparse_lenet300()  # fc1 holds about 10%; this preset scaled to 4x asks for about 25%
    with pytest.raises(ValueError, match="keeps more than the stage holds: {'fc1'"):
        splits(model, {"fc1": 1.0, "fc2": 1.0, "fc3": 1.0}, 4.0)


class ScoreByWeights:
    """A StageContext stand-in whose 'accuracy' is the L1 norm of the effective (masked) weights:
    it shows which weights each evaluation saw."""

    def evaluate(self, model: torch.nn.Module, split: str) -> float:
        assert split == "val"
        return float(sum(m.weight.detach().abs().sum() for m in prunable_layers(model).values()))


def test_probe_prunes_each_candidate_and_restores_the_weights():
    model = sparse_lenet300()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    candidates = splits(model, {"fc1": 0.04, "fc2": 0.07, "fc3": 0.12}, 40.0)
    scores = probe(ScoreByWeights(), model, candidates)
    assert set(scores) == {"stage as saved", *candidates}
    assert len({round(v, 4) for v in scores.values()}) == 3  # each evaluation saw other weights
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], before[k]) for k in before)


def test_stage_context_finds_the_model_and_data_under_a_round_parent():
    node = {"model": {"net": {}}, "data": {"name": "mnist"}}
    assert stage_context({"parent": {"start": "x", "context": node}, "recipe": {}}) is node
    assert stage_context({"recipe": {}}) == {}


def test_the_global_split_variant_reuses_the_six_round_runs_first_five_rounds():
    """Its rounds 1-5 must be the six-round run's (same per-layer keeps, so the stage cache
    reuses them); only the last round differs, at 2,578 kept weights as the six-round run."""
    from conftest import compose_cfg

    def rounds(experiment: str) -> list[dict[str, float]]:
        cfg = compose_cfg([f"experiment={experiment}", "data=mnist"])
        pruner = build_pruner(cfg.pruner)
        keep, _ = initial_targets(cfg, SIZES)
        return pruner.rounds(SIZES, keep)

    six = rounds("lenet5_admm_progressive_167x_six_rounds")
    variant = rounds("lenet5_admm_progressive_167x_global_split")
    assert len(six) == len(variant) == 6 and six[:5] == variant[:5]
    kept = [sum(keep_count(SIZES[n], f) for n, f in r[-1].items()) for r in (six, variant)]
    assert kept == [2578, 2578]
    assert variant[-1]["conv1"] == variant[4]["conv1"] and variant[-1]["fc2"] == variant[4]["fc2"]
