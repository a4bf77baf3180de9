"""Stage descriptions must name every stage folder exactly as the hand-built settings dicts did
before them: a moved hash orphans every cached stage and every published run's stage folder."""

from __future__ import annotations

import pytest

from admm_pruning.foundations.desc import settings_hash
from admm_pruning.pipeline import _dense_settings, context_key
from admm_pruning.pruners.base import keyed_node
from admm_pruning.store.descriptions import (
    PretrainDesc,
    ProgressiveADMMDesc,
    ProgressiveRetrainDesc,
    PruneDesc,
    RetrainDesc,
    RoundDesc,
    SensitivityDesc,
)
from admm_pruning.training.recipe import Recipe
from conftest import compose_cfg

KEEP = {"conv1": 0.5, "fc1": 0.01}

# Folder hashes computed by the code before descriptions (commit 4455666's pipeline.Stages and
# sensitivity.derive_keep) for data=mnist10k seed=3, KEEP, retrain.epochs=7 and levels [0.5, 0.1].
PINNED = {
    ("lenet5_admm_71x", "admm"): ("d48f2746c4ff", "861486b74aca", "1be57f8a6063"),
    ("lenet5_compare_mnist", "oneshot"): ("d48f2746c4ff", "6b88df1519e5", "3b7cc32a1687"),
    ("lenet5_compare_mnist", "han"): ("d48f2746c4ff", "b4655beee546", "1dc39e361c5d"),
}
PINNED_SENSITIVITY = "fb1553fd72bc"


@pytest.mark.parametrize("experiment, pruner", sorted(PINNED))
def test_stage_folders_keep_their_names(experiment, pruner):
    cfg = compose_cfg([f"experiment={experiment}", f"pruner={pruner}", "data=mnist10k", "seed=3"])
    dense = PretrainDesc(**context_key(cfg), seed=cfg.seed, pretrain=_dense_settings(cfg))
    pruned = PruneDesc(dense, keyed_node(cfg.pruner), KEEP, pruner)
    retrained = RetrainDesc(pruned, Recipe.from_cfg(cfg.retrain, epochs=7).settings())
    assert (dense.hash(), pruned.hash(), retrained.hash()) == PINNED[(experiment, pruner)]
    assert (dense.folder(), pruned.folder()) == (f"pretrain-{dense.hash()}", f"{pruner}-{pruned.hash()}")
    assert SensitivityDesc(dense, [0.5, 0.1]).folder() == f"sensitivity-{PINNED_SENSITIVITY}"


def test_sub_stage_descriptions_hash_the_dicts_they_replaced():
    recipe = {"epochs": 2, "lr": 1e-3}
    assert RoundDesc(2, recipe).folder() == f"round2-{settings_hash({'round': 2, 'recipe': recipe})}"
    admm = ProgressiveADMMDesc("abc", KEEP, 1003, {"rho": 1e-3}, {}, {"model": "m"})
    as_dict = {"start": "abc", "keep": KEEP, "seed": 1003, "admm": {"rho": 1e-3}, "sparsity": {},
               "context": {"model": "m"}}
    assert admm.folder() == f"progressive-admm-{settings_hash(as_dict)}"
    assert ProgressiveRetrainDesc(admm, recipe).hash() == settings_hash({"parent": as_dict, "recipe": recipe})


def test_the_pruner_name_names_the_folder_but_does_not_key_it():
    dense = PretrainDesc({}, {}, {}, 0, {})
    a, b = PruneDesc(dense, {"x": 1}, KEEP, "admm"), PruneDesc(dense, {"x": 1}, KEEP, "other")
    assert a.hash() == b.hash() and a.folder() != b.folder()
    assert PruneDesc(dense, {"x": 2}, KEEP, "admm").hash() != a.hash()
