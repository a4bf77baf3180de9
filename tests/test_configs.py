import hashlib
import itertools
import json
import re
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from admm_pruning.config import validate
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.models.layers import prunable_layers
from admm_pruning.pipeline import MACHINE_DATA_KEYS
from admm_pruning.plan import initial_plan, initial_targets
from admm_pruning.pruners.base import build_pruner
from admm_pruning.pruners.progressive import round_targets
from admm_pruning.sparsity.projections import keep_count
from conftest import CONF, ROOT, compose_cfg

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
    elif experiment.endswith(("_progressive", "_profile", "_compare", "_compare_tune")):  # named per data set
        model, kind = experiment.split("_", 1)
        assert cfg.experiment_name == f"{model}_{data}_{kind.removesuffix('_tune')}"  # tuning beside its study
    else:
        assert cfg.experiment_name == experiment



@pytest.mark.parametrize("trainer, accelerator", [("default", "auto"), ("gpu", "gpu"), ("ddp", "gpu"),
                                                  ("ddp_cpu", "cpu")])
def test_every_trainer_config_composes(trainer, accelerator):
    assert sorted(p.stem for p in (Path(CONF) / "trainer").glob("*.yaml")) == ["ddp", "ddp_cpu", "default", "gpu"]
    cfg = compose_cfg([f"trainer={trainer}"])
    assert cfg.trainer.accelerator == accelerator and cfg.trainer.precision == "32-true"

@pytest.mark.parametrize("experiment, paper_ratio, expected", [
    ("lenet300_admm_23x", 22.9, 266200 / (9408 + 2100 + 120)),
    ("lenet5_admm_40x", 40.2, 430500 / (100 + 2250 + 8000 + 350)),
    ("lenet5_admm_71x", 71.2, 430500 / (100 + 1999 + 3597 + 350)),  # 6,050 scaled to exactly 71.2x
    ("lenet5_admm_71x_fast", 71.2, 430500 / (100 + 1999 + 3597 + 350)),
    # the progressive code's 20 / 5.3 / 1 / 7% profile scaled to 167x: 2,578 kept, 166.99x
    ("lenet5_admm_progressive_167x", 167, 430500 / (45 + 591 + 1786 + 156)),
    ("lenet5_admm_progressive_167x_short", 167, 430500 / (45 + 591 + 1786 + 156)),
])
def test_presets_give_the_papers_weight_counts(experiment, paper_ratio, expected):
    cfg = compose_cfg([f"experiment={experiment}"])
    layers = prunable_layers(instantiate(cfg.model.net))
    sizes = {n: m.weight.numel() for n, m in layers.items()}
    keep, _ = initial_targets(cfg, sizes)
    total = sum(sizes.values())
    kept = sum(keep_count(sizes[n], f) for n, f in keep.items())
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
    (["pretrain.optimizer.lr=abc"], "pretrain.optimizer.lr='abc': expected a number"),
    (["+retrain.optimizer.weight_decay=-1"], "retrain.optimizer.weight_decay=-1: must be >= 0"),
    (["experiment=alexnet_admm_21x", "pruner.optimizer.momentum=-0.9"],
     "pruner.optimizer.momentum=-0.9: must be >= 0"),
    # an optimizer recognised by its _target_ alone, wherever it sits
    (["+pruner.extra={_target_:torch.optim.SGD,lr:-1}"], "pruner.extra.lr=-1: learning rates must be > 0"),
    # progressive ADMM copies retrain.optimizer by interpolation: reported where it was written
    (["pruner=admm_progressive", "retrain.optimizer.lr=-1"], "retrain.optimizer.lr=-1: learning rates must be > 0"),
    (["seed=abc"], "seed='abc': expected an integer from 0 to 4294967295"),
    (["seed=1.5"], "seed=1.5: expected an integer from 0 to 4294967295"),
    (["seed=true"], "seed=True: expected an integer from 0 to 4294967295"),
    (["data.split_seed=abc"], "data.split_seed='abc': expected an integer from 0 to 4294967295"),
    (["data=mnist10k", "data.split_seed=null"], "data.split_seed=None: expected an integer from 0 to 4294967295"),
    (["data.verify_md5=no"], "data.verify_md5='no': expected true or false"),
    (["data.download=1"], "data.download=1: expected true or false"),
    (["fast.channels_last=maybe"], "fast.channels_last='maybe': expected true or false"),
    (["fast.fused_optimizer=2"], "fast.fused_optimizer=2: expected true or false"),
])
def test_bad_values_are_refused_by_key_and_value_before_any_model_is_built(overrides, message):
    cfg = compose_cfg([*LENET5, *overrides])
    with pytest.raises(ConfigError) as exc:
        validate(cfg, _no_build)
    assert str(exc.value) == message


@pytest.mark.parametrize("overrides, message", [
    (["pruner.iterations=0"], "pruner.iterations=0: must be > 0"),
    (["pruner.rho_multiplier=-1"], "pruner.rho_multiplier=-1: must be > 0"),
    (["pruner.eps=-1e-3"], "pruner.eps=-0.001: must be >= 0"),
    (["pruner.dropout=1.0"], "pruner.dropout=1.0: a dropout rate must lie in [0, 1)"),
    (["pruner.lr_drop_gamma=0"], "pruner.lr_drop_gamma=0: must lie in (0, 1]"),
    (["pruner=han", "pruner.lr_scale=-1"], "pruner.lr_scale=-1: must be > 0"),
    (["pruner=han", "pruner.rounds=0"], "pruner.rounds=0: must be > 0"),
    (["pruner=iterative_magnitude", "pruner.dropout=-0.1"], "pruner.dropout=-0.1: a dropout rate must lie in [0, 1)"),
    (["pruner=admm_progressive", "pruner.round_retrain_epochs=-1"],
     "pruner.round_retrain_epochs=-1: epoch counts must be >= 0"),
    (["pruner=admm_progressive", "pruner.retrain_dropout=1.5"],
     "pruner.retrain_dropout=1.5: a dropout rate must lie in [0, 1)"),
    (["pruner=admm_progressive", "pruner.batch_size=0"], "pruner.batch_size=0: must be > 0"),
    (["pruner=admm_progressive", "pruner.keep_best=0"], "pruner.keep_best=0: must be > 0"),
    (["pruner=iterative_magnitude", "pruner.epochs_per_round=0"], "pruner.epochs_per_round=0: must be > 0"),
])
def test_each_pruner_refuses_its_own_bad_options_by_key(overrides, message):
    """A pruner's options are checked by the pruner's own file, when it is built (before any data)."""
    from admm_pruning.pruners.base import build_pruner
    cfg = compose_cfg([*LENET5, *overrides])
    validate(cfg, lambda: instantiate(cfg.model.net))
    with pytest.raises(ConfigError) as exc:
        build_pruner(cfg.pruner)
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


@pytest.mark.parametrize("key", ["retrain.dropout_scaled_by", "pruner.retrain_dropout_scaled_by"])
def test_the_dropout_rule_must_name_a_prunable_layer(key):
    overrides = ["experiment=lenet5_admm_71x", "pruner=admm_progressive", f"{key}=fc9"]
    with pytest.raises(ConfigError) as exc:
        validate(compose_cfg(overrides), lambda: instantiate(compose_cfg(overrides).model.net))
    assert str(exc.value).startswith(f"{key}='fc9': unknown layer for model lenet5; prunable layers are conv1")


def test_a_null_dropout_rule_keeps_the_retrain_key_and_a_layer_resolves_the_rate():
    import torch

    from admm_pruning.training.recipe import Recipe
    recipe = Recipe.from_cfg(compose_cfg(["experiment=lenet5_admm_71x"]).retrain)
    masks = {"fc1": torch.zeros(500, 800, dtype=torch.bool)}
    masks["fc1"].view(-1)[:4000] = True  # keeps 1%
    assert recipe.with_dropout_scaled(masks, None).settings() == recipe.settings()
    assert "dropout_scaled_by" not in recipe.settings()
    assert recipe.with_dropout_scaled(masks, "fc1").dropout == pytest.approx(0.05)
    assert recipe.with_dropout_scaled(masks, "fc2") is recipe  # not masked: the rate as it is


def test_unchecked_data_never_shares_a_stage_key_with_checked_mnist():
    from admm_pruning.pipeline import context_key
    checked = context_key(compose_cfg([*LENET5, "data.verify_md5=true", "data.data_dir=/a"]))
    assert checked == context_key(compose_cfg([*LENET5, "data.data_dir=/b", "data.download=false"]))
    assert context_key(compose_cfg([*LENET5, "data.verify_md5=false"])) != checked


# The resolved settings that key the stage cache, for experiment=lenet5_admm_71x data=mnist10k.
STAGE_NODES = ("pretrain", "retrain", "pruner", "model", "data")
# Last change: retrain.dropout_scaled_by (null) was added. No stage key moved: the retrain stage is
# keyed by the Recipe's settings, which hold the resolved rate (test_a_null_dropout_rule_keeps_...).
PINNED_STAGE_SETTINGS_SHA256 = "f57d842d8e8a7e8d404e1b15272b6ad7e2b7dd83abb91a867afe16a574ff5021"


def stage_settings(overrides: list[str]) -> str:
    """The resolved stage nodes as canonical JSON, less the machine-specific data keys."""
    cfg = compose_cfg(overrides)
    nodes = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in STAGE_NODES}
    for key in MACHINE_DATA_KEYS:
        nodes["data"].pop(key, None)
    return json.dumps(nodes, sort_keys=True)


def test_stage_settings_are_pinned():
    """The resolved pretrain, retrain, pruner, model and data nodes name the cached stage folders
    (artifacts/stages/<stage>-<hash of its settings>) and shaped every published result in results/.
    A config edit that changes them (a default in conf/pruner, conf/model, conf/data, conf/pretrain,
    conf/retrain, or how train.yaml composes them) silently invalidates the cache and leaves the
    published results describing a recipe the configs no longer give. If the change is meant:
    regenerate the results it affects (make reproduce-lenet5 DATA=mnist10k, the other presets and
    the studies), then record the new hash below, in the same change."""
    blob = stage_settings(["experiment=lenet5_admm_71x", "data=mnist10k"])
    assert hashlib.sha256(blob.encode()).hexdigest() == PINNED_STAGE_SETTINGS_SHA256, blob


def test_recipes_are_config_groups():
    """TF LeNet recipes by default; the AlexNet presets select the Caffe ones (alexnet_han_9x only its
    pretraining: Han's pruner brings its own retraining recipe and uses retrain.epochs alone)."""
    lenet = compose_cfg(["experiment=lenet5_admm_71x"])
    assert lenet.pretrain.optimizer._target_ == lenet.retrain.optimizer._target_ == "torch.optim.Adam"
    assert "checkpoint" not in lenet.pretrain and "lr_scheduler" not in lenet.retrain
    for experiment in ("alexnet_admm_21x", "alexnet_admm_structured", "alexnet_han_9x"):
        cfg = compose_cfg([f"experiment={experiment}"])
        assert cfg.pretrain.optimizer._target_ == "torch.optim.SGD" and cfg.pretrain.lr_scheduler.step_size == 20
        assert cfg.pretrain.checkpoint is None and cfg.pretrain.dropout == cfg.model.dropout
    for experiment in ("alexnet_admm_21x", "alexnet_admm_structured"):
        cfg = compose_cfg([f"experiment={experiment}"])
        assert (cfg.retrain.epochs, cfg.retrain.batch_size, cfg.retrain.optimizer.lr) == (90, 256, 0.01)
    assert compose_cfg(["experiment=alexnet_han_9x"]).retrain.epochs == 10


STUDIES = ["lenet5_sweep", "lenet300_sweep", "lenet5_progressive", "lenet300_progressive", "lenet5_profile"]


def sweep_jobs(experiment: str, extra: list[str] = ()) -> list[list[str]]:
    """The overrides of every job `admm-prune -m experiment=<experiment>` launches: the grid of the
    experiment's hydra.sweeper.params, expanded as Hydra's basic sweeper does."""
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}", *extra], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    grid = [[f"{k}={v}" for v in str(values).split(",")] for k, values in params.items()]
    return [[f"experiment={experiment}", *extra, *job] for job in itertools.product(*grid)]


@pytest.mark.parametrize("experiment", STUDIES)
def test_every_job_of_a_study_grid_is_valid_and_keeps_its_budget(experiment):
    """`admm-prune -m experiment=<study>` needs no further arguments: every grid point composes,
    passes validation, builds its pruner and fits the experiment's epoch budget."""
    jobs = sweep_jobs(experiment, ["data=mnist10k"])
    assert len(jobs) == {"lenet5_sweep": 48, "lenet300_sweep": 40, "lenet5_progressive": 16,
                         "lenet300_progressive": 16, "lenet5_profile": 6}[experiment]
    for job in (j for j in jobs if "seed=0" in j):  # the seed changes no setting that is checked here
        cfg = compose_cfg(job)
        net = instantiate(cfg.model.net)
        validate(cfg, lambda net=net: net)
        pruner = build_pruner(cfg.pruner)
        sizes = {n: m.weight.numel() for n, m in prunable_layers(net).items()}
        plan = initial_plan(cfg, pruner, sizes, lambda batch: 9000 // batch)
        if cfg.budget.epochs is not None:
            assert plan.budget_epochs == cfg.budget.epochs


@pytest.mark.parametrize("pruner, settings", [
    ("admm", {"iterations": 12, "epochs_per_iteration": 1}),
    ("iterative_magnitude", {"rounds": 4, "epochs_per_round": 4}),
    ("han", {"rounds": 4, "epochs_per_round": 4}),
])
def test_sweep_pruners_get_their_share_of_the_budget(pruner, settings):
    """conf/study_pruner/sweep/<pruner>.yaml: 12 pruning epochs + 12 retraining of the 24-epoch budget."""
    cfg = compose_cfg(["experiment=lenet5_sweep", f"pruner={pruner}", "prune.compression=16"])
    assert {k: cfg.pruner[k] for k in settings} == settings and cfg.budget.epochs == 24
    # outside a study the pruner keeps its own defaults
    assert {k: compose_cfg([f"pruner={pruner}"]).pruner[k] for k in settings} != settings


@pytest.mark.parametrize("experiment, targets", [
    ("lenet5_progressive", {27: 32, 81: 44, 167: 56, 250: 56}),
    ("lenet300_progressive", {27: 32, 60: 44, 100: 44, 150: 56}),
])
def test_one_shot_admm_gets_the_progressive_chains_admm_epochs(experiment, targets):
    """One-shot ADMM in the progressive study: 12 R - 4 Z/U updates every 2 epochs for a chain of
    R rounds (R x 16 ADMM + (R - 1) x 8 retraining epochs), with the progressive rho schedule; the
    chains keep their own shortened recipe and no option of one pruner leaks into the other."""
    for target, iterations in targets.items():
        cfg = compose_cfg([f"experiment={experiment}", "pruner=admm", f"prune.compression={target}"])
        chain = compose_cfg([f"experiment={experiment}", f"prune.compression={target}"])
        rounds = len(round_targets(target, chain.pruner.step))
        assert cfg.pruner.iterations == iterations == 12 * rounds - 4
        assert (cfg.pruner.epochs_per_iteration, cfg.pruner.rho, cfg.pruner.rho_multiplier, cfg.pruner.rho_max) \
            == (2, 1e-3, 1.3, 8.16e-3)
        assert "round_retrain_epochs" not in cfg.pruner and build_pruner(cfg.pruner).name == "admm"
        assert (chain.pruner.iterations, chain.pruner.epochs_per_iteration, chain.pruner.round_retrain_epochs) \
            == (8, 2, 8)
        assert cfg.retrain.epochs == chain.retrain.epochs == 12
    unmapped = compose_cfg([f"experiment={experiment}", "pruner=admm", "prune.compression=33"])
    with pytest.raises(ConfigError, match="pruner.iterations='no study.oneshot_iterations entry"):
        build_pruner(unmapped.pruner)
    given = compose_cfg([f"experiment={experiment}", "pruner=admm", "prune.compression=33", "pruner.iterations=40"])
    assert given.pruner.iterations == 40


def test_every_invocation_gets_its_own_hydra_run_folder():
    """A rejected run must not overwrite the .hydra/ record of the last good one: the run folder is
    stamped to the microsecond, as sweep folders are."""

    from hydra import compose, initialize_config_dir

    from conftest import CONF

    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        run_dir = compose(config_name="train", return_hydra_config=True).hydra.run.dir
    assert re.search(r"/hydra/lenet5_admm/mnist/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}$", run_dir), run_dir


def test_environment_yml_names_the_same_requirements_as_pyproject():
    import yaml

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {*project["dependencies"], *project["optional-dependencies"]["dev"],
              *project["optional-dependencies"]["slurm"]}
    (pip,) = [d["pip"] for d in yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
              if isinstance(d, dict)]
    assert set(pip) - {"-e ."} == wanted


# settings_hash of each moved pruner's resolved node, taken from the tree before the magnitude
# pruners got a file each (experiment=lenet5_compare_mnist): their stage keys must not move.
MOVED_PRUNER_KEYS = {"oneshot": "6a3614b2916a", "random": "2ee7e7cfabd2", "global_magnitude": "f0912d7f9d55",
                     "iterative_magnitude": "306f18a880ea"}


@pytest.mark.parametrize("name", sorted(MOVED_PRUNER_KEYS))
def test_a_pruner_moved_to_its_own_file_keeps_its_stage_keys(name):
    from admm_pruning.foundations.desc import settings_hash
    from admm_pruning.pruners.base import keyed_node
    cfg = compose_cfg(["experiment=lenet5_compare_mnist", f"pruner={name}"])
    assert cfg.pruner._target_.startswith(f"admm_pruning.pruners.{name}.")  # the file named for it
    assert settings_hash(keyed_node(cfg.pruner)) == MOVED_PRUNER_KEYS[name]
