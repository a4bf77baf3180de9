from pathlib import Path

import pytest
from hydra.utils import instantiate

from admm_pruning.config import ConfigError, validate
from admm_pruning.models.layers import prunable_layers
from admm_pruning.pruners.base import build_pruner
from admm_pruning.sparsity.projections import keep_count
from conftest import CONF, compose_cfg

EXPERIMENTS = sorted(p.stem for p in (Path(CONF) / "experiment").glob("*.yaml"))


def test_the_paper_experiments_exist():
    assert {"lenet300_admm_23x", "lenet5_admm_40x", "lenet5_admm_71x"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
@pytest.mark.parametrize("data", ["mnist", "mnist10k"])
def test_every_experiment_composes_and_instantiates(experiment, data):
    cfg = compose_cfg([f"experiment={experiment}", f"data={data}"])
    validate(cfg, lambda: instantiate(cfg.model.net))
    assert instantiate(cfg.data).protocol == data
    pruner = build_pruner(cfg.pruner)
    assert pruner.name == cfg.pruner.name
    assert callable(instantiate(cfg.logger))
    if experiment.endswith("_sweep"):
        assert cfg.experiment_name == experiment.replace("_sweep", f"_{data}_sweep")
        assert cfg.budget.epochs is not None and cfg.retrain.epochs is None
    elif experiment.endswith(("_progressive", "_profile")):  # multi-run folders, named per data set
        model, kind = experiment.split("_", 1)
        assert cfg.experiment_name == f"{model}_{data}_{kind}"
    else:
        assert cfg.experiment_name == experiment


@pytest.mark.parametrize("experiment, paper_ratio, expected", [
    ("lenet300_admm_23x", 22.9, 266200 / (9408 + 2100 + 120)),
    ("lenet5_admm_40x", 40.2, 430500 / (100 + 2250 + 8000 + 350)),
    ("lenet5_admm_71x", 71.2, 430500 / (100 + 2000 + 3600 + 350)),
])
def test_presets_give_the_papers_weight_counts(experiment, paper_ratio, expected):
    cfg = compose_cfg([f"experiment={experiment}"])
    layers = prunable_layers(instantiate(cfg.model.net))
    total = sum(m.weight.numel() for m in layers.values())
    kept = sum(keep_count(layers[n].weight.numel(), f) for n, f in cfg.prune.keep.items())
    assert total / kept == pytest.approx(expected)
    assert round(total / kept, 1) == pytest.approx(paper_ratio, abs=0.05)
    assert cfg.paper.compression == paper_ratio


def test_recipe_defaults_follow_the_tf_code():
    cfg = compose_cfg(["experiment=lenet5_admm_71x"])
    assert (cfg.pretrain.epochs, cfg.pruner.iterations, cfg.pruner.epochs_per_iteration, cfg.retrain.epochs) \
        == (18, 30, 4.5, 18)
    assert cfg.pruner.rho == 1e-4 and cfg.pruner.rho_multiplier == 1.0 and cfg.pruner.rho_scale == 0.5
    assert cfg.pruner.dropout == 0.0 and cfg.pretrain.dropout == 0.5 and cfg.retrain.dropout == 0.5
    assert cfg.pretrain.l2 == 5e-5 and cfg.pruner.l2 == 5e-5 and cfg.retrain.l2 == 0.0
    assert cfg.pruner.optimizer._target_ == "torch.optim.Adam" and cfg.pruner.optimizer.lr == 1e-3


@pytest.mark.parametrize("override, match", [
    ("+prune.keep.conv3=0.1", "prune.keep.conv3: unknown layer 'conv3' for model lenet5"),
    ("prune.keep.fc2=0", r"prune.keep.fc2=0: keep fractions must lie in \(0, 1\]"),
    ("prune.keep.fc2=1.01", r"prune.keep.fc2=1.01"),
    ("pretrain.epochs=-2", "pretrain.epochs=-2"),
    ("pruner.iterations=0", "pruner.iterations=0: must be > 0"),
])
def test_validation_names_the_offending_key(override, match):
    cfg = compose_cfg(["experiment=lenet5_admm_71x", override])
    with pytest.raises(ConfigError, match=match):
        validate(cfg, lambda: instantiate(cfg.model.net))


def test_empty_targets_are_refused():
    cfg = compose_cfg([])
    with pytest.raises(ConfigError, match="prune.keep is empty"):
        validate(cfg, lambda: instantiate(cfg.model.net))


def _no_build():
    raise AssertionError("build() was called although a plain value was already wrong")


LENET5 = ["experiment=lenet5_admm_71x"]


@pytest.mark.parametrize("overrides, message", [
    (["pruner.rho=nan"], "pruner.rho=nan: not a finite number"),
    (["pruner.rho=inf"], "pruner.rho=inf: not a finite number"),
    (["prune.keep.fc1=nan"], "prune.keep.fc1=nan: not a finite number"),
    (["prune.sensitivity_levels=[0.5,-inf]"], "prune.sensitivity_levels.1=-inf: not a finite number"),
    (["prune.compression=inf"], "prune.compression=inf: not a finite number"),
    (["+pretrain.optimizer.weight_decay=nan"], "pretrain.optimizer.weight_decay=nan: not a finite number"),
    (["pretrain.optimizer.lr=-0.1"], "pretrain.optimizer.lr=-0.1: learning rates must be > 0"),
    (["retrain.optimizer.lr=0"], "retrain.optimizer.lr=0: learning rates must be > 0"),
    (["pruner.optimizer.lr=-0.1"], "pruner.optimizer.lr=-0.1: learning rates must be > 0"),
    # Han retrains with pretraining's optimizer (an interpolated copy): reported where it was written
    (["pruner=han", "pretrain.optimizer.lr=0.0"], "pretrain.optimizer.lr=0.0: learning rates must be > 0"),
    (["pruner=han", "pruner.lr_scale=-1"], "pruner.lr_scale=-1: must be > 0"),
    (["pretrain.optimizer.lr=abc"], "pretrain.optimizer.lr='abc': expected a number"),
    (["+retrain.optimizer.weight_decay=-1"], "retrain.optimizer.weight_decay=-1: must be >= 0"),
    (["experiment=alexnet_admm_21x", "pruner.optimizer.momentum=-0.9"],
     "pruner.optimizer.momentum=-0.9: must be >= 0"),
    # an optimizer recognised by its _target_ alone, wherever it sits
    (["+pruner.extra={_target_:torch.optim.SGD,lr:-1}"], "pruner.extra.lr=-1: learning rates must be > 0"),
    # progressive ADMM copies retrain.optimizer by interpolation: reported where it was written
    (["pruner=admm_progressive", "retrain.optimizer.lr=-1"], "retrain.optimizer.lr=-1: learning rates must be > 0"),
    (["seed=abc"], "seed='abc': expected an integer"),
    (["seed=1.5"], "seed=1.5: expected an integer"),
    (["seed=true"], "seed=True: expected an integer"),
    (["data.split_seed=abc"], "data.split_seed='abc': expected an integer"),
    (["data=mnist10k", "data.split_seed=null"], "data.split_seed=None: expected an integer"),
])
def test_bad_values_are_refused_by_key_and_value_before_any_model_is_built(overrides, message):
    cfg = compose_cfg([*LENET5, *overrides])
    with pytest.raises(ConfigError) as exc:
        validate(cfg, _no_build)
    assert str(exc.value) == message


def test_layer_names_are_checked_on_a_model_built_once_after_the_values():
    calls = []
    cfg = compose_cfg(["experiment=lenet5_admm_71x"])

    def build():
        calls.append(1)
        return instantiate(cfg.model.net)

    validate(cfg, build)
    assert calls == [1]
    with pytest.raises(ConfigError, match="prune.keep.conv3: unknown layer"):
        validate(compose_cfg([*LENET5, "+prune.keep.conv3=0.1"]), build)
