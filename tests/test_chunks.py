"""k optimizer steps per Lightning batch (training/chunks.py) make the automatic loop's steps, bit
for bit: weights, ADMM state, schedulers, the stop, and what the loggers write at which step."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path

import pytest
import torch
from pytorch_lightning.loggers import CSVLogger

from admm_pruning.data.mnist import MNISTData
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.pruners.admm import ADMMModule
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.sparsity.masks import apply_masks, magnitude_masks
from admm_pruning.training import chunks
from admm_pruning.training.context import StageContext
from admm_pruning.training.fast import FastPath
from admm_pruning.training.modules import ClassifierModule

KEEP = {"conv1": 0.5, "conv2": 0.2, "fc1": 0.05, "fc2": 0.3}
TRAINER = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
           "num_sanity_val_steps": 0, "log_every_n_steps": 4, "deterministic": True}


@pytest.fixture(scope="module")
def data(fake_data_dir: Path) -> MNISTData:
    """1,000 training images: 20 batches of 50, so chunks of 7 end mid-epoch (7, 7, 6)."""
    return MNISTData("mnist", str(fake_data_dir), val_size=200, pixel_scale="unit", verify_md5=False).setup()


def fit(data: MNISTData, tmp: Path, k: int, make, epochs: int, resume: Path | None = None,
        **trainer: object) -> tuple[ClassifierModule, list]:
    """Trains a fresh module from ``make()`` (from ``resume``, a checkpoint, if given); returns it
    and the rows of its metrics.csv."""
    torch.manual_seed(0)
    module = make()
    ctx = StageContext(data=data, trainer_kwargs={**TRAINER, **trainer}, seed=3, experiment="chunks",
                       fast=FastPath(steps_per_batch=k),
                       logger_factory=lambda stage, save_dir, **_: CSVLogger(save_dir, name="csv", version=0))
    ctx.fit(module, "stage", tmp, resume, 50, max_epochs=epochs)
    ctx.stage_logger.finalize("success")
    with open(tmp / "csv" / "version_0" / "metrics.csv") as f:
        return module, list(csv.DictReader(f))


def assert_same_run(a: tuple[ClassifierModule, list], b: tuple[ClassifierModule, list]) -> None:
    (ma, rows_a), (mb, rows_b) = a, b
    assert ma.trainer.global_step == mb.trainer.global_step
    sa, sb = ma.state_dict(), mb.state_dict()
    assert list(sa) == list(sb) and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert rows_a == rows_b  # every logged value at the same step, epoch column included
    oa, ob = ma.trainer.optimizers[0].state_dict(), mb.trainer.optimizers[0].state_dict()
    assert all(torch.equal(oa["state"][i]["exp_avg"], ob["state"][i]["exp_avg"]) for i in oa["state"])


def test_dense_training_with_l2_and_an_epoch_scheduler(data, tmp_path):
    def make():
        return ClassifierModule(LeNet5(dropout=0.5), partial(torch.optim.Adam, lr=1e-3), l2=5e-5,
                                lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5))

    auto = fit(data, tmp_path / "auto", 1, make, 2)
    chunked = fit(data, tmp_path / "k7", 7, make, 2)
    assert auto[0].automatic_optimization and not chunked[0].automatic_optimization
    assert_same_run(auto, chunked)
    assert chunked[0].trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-3 / 4)
    assert [r["step"] for r in chunked[1] if r["train/loss"]] == ["3", "7", "11", "15", "19", "23", "27", "31",
                                                                  "35", "39"]
    assert [r["step"] for r in chunked[1] if r["val/acc"]] == ["19", "39"]


def test_admm_updates_a_step_scheduler_and_a_stop_inside_a_chunk(data, tmp_path):
    """Z/U every 9 steps, the lr dropped every 4 and reset at each update, and the stop after the
    third update (step 27: the middle of the second epoch's second chunk)."""
    def make():
        schedule = ADMMSchedule(optimizer=partial(torch.optim.Adam, lr=1e-3), iterations=3, epochs_per_iteration=0.45,
                                rho=1e-3, rho_multiplier=1.3, lr_drop_epochs=0.2, lr_drop_gamma=0.5)
        return ADMMModule(LeNet5(dropout=0.0), schedule, KEEP, steps_per_epoch=20)

    auto = fit(data, tmp_path / "auto", 1, make, 3)
    chunked = fit(data, tmp_path / "k7", 7, make, 3)
    assert_same_run(auto, chunked)
    assert chunked[0].trainer.global_step == 27 and chunked[0].history == auto[0].history
    assert [r["step"] for r in chunked[1] if r["admm/rho"]] == ["8", "17", "26"]


@pytest.mark.parametrize("first, then", [(1, 7), (7, 1)])
def test_a_checkpoint_resumes_across_the_two_loops(data, tmp_path, first, then):
    """Lightning counts automatic and manual optimizer steps apart: without carrying the count
    over, ADMM resumed in the other loop would restart its Z/U schedule at step 0."""
    def make():
        schedule = ADMMSchedule(optimizer=partial(torch.optim.Adam, lr=1e-3), iterations=3, epochs_per_iteration=0.45,
                                rho=1e-3, rho_multiplier=1.3)
        return ADMMModule(LeNet5(dropout=0.0), schedule, KEEP, steps_per_epoch=20)

    whole = fit(data, tmp_path / "whole", 1, make, 3)
    fit(data, tmp_path / "split", first, make, 1)
    resumed = fit(data, tmp_path / "split", then, make, 3, resume=tmp_path / "split" / "checkpoints" / "last.ckpt")
    assert resumed[0].trainer.global_step == 27
    assert [h["iteration"] for h in resumed[0].history] == [1, 2, 3] and resumed[0].history == whole[0].history
    sa, sb = whole[0].state_dict(), resumed[0].state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_masked_retraining_with_step_masks(data, tmp_path):
    def make():
        model = LeNet5(dropout=0.5)
        apply_masks(model, magnitude_masks(model, KEEP))
        return ClassifierModule(model, partial(torch.optim.Adam, lr=1e-3))

    auto = fit(data, tmp_path / "auto", 1, make, 1)
    chunked = fit(data, tmp_path / "k7", 7, make, 1)
    assert_same_run(auto, chunked)
    weight = chunked[0].model.fc1.weight
    assert int((weight != 0).sum()) <= round(0.05 * weight.numel())


def test_settings_lightning_counts_per_batch_keep_the_automatic_loop(data, tmp_path):
    def make():
        return ClassifierModule(LeNet300(), partial(torch.optim.Adam, lr=1e-3))

    module, _ = fit(data, tmp_path, 7, make, 1, accumulate_grad_batches=2)
    assert module.automatic_optimization


@pytest.mark.parametrize("setting, why", [
    ({"accumulate_grad_batches": 2}, "trainer.accumulate_grad_batches=2"),
    ({"gradient_clip_val": 1.0}, "trainer.gradient_clip_val=1.0"),
    ({"limit_train_batches": 3}, "trainer.limit_train_batches=3"),
    ({"max_steps": 5}, "trainer.max_steps=5"),
    ({"val_check_interval": 0.5}, "trainer.val_check_interval=0.5"),
    ({"precision": "bf16-mixed"}, "trainer.precision=bf16-mixed"),
])
def test_reason_names_the_setting(setting, why):
    import pytorch_lightning as pl

    trainer = pl.Trainer(accelerator="cpu", devices=1, logger=False, **setting)
    assert chunks.reason(trainer, in_memory=True) == why
    assert chunks.reason(pl.Trainer(accelerator="cpu", devices=1, logger=False), in_memory=False) == \
        "the data is not in memory"
    assert chunks.reason(pl.Trainer(accelerator="cpu", devices=1, logger=False), in_memory=True) is None


@pytest.mark.parametrize("bad", [0, -2, 2.5, True, "4"])
def test_a_bad_steps_per_batch_is_a_config_error(bad):
    with pytest.raises(ConfigError, match=rf"fast.steps_per_batch={bad!r}: must be an integer >= 1"):
        FastPath(steps_per_batch=bad)


def test_chunks_group_batches_and_expose_the_sampler(data):
    loader = data.loader("train", 50, shuffle=True, seed=1)
    grouped = chunks.Chunks(loader, 7)
    assert len(grouped) == 3 and grouped.sampler is loader.sampler
    flat = [b for chunk in grouped for b in chunk]
    assert [len(c) for c in grouped] == [7, 7, 6]
    assert all(torch.equal(a[0], b[0]) for a, b in zip(flat, loader, strict=True))


def test_a_scheduler_the_chunked_loop_cannot_step_is_refused_before_the_first_step(data, tmp_path):
    def make():
        return ClassifierModule(LeNet300(), partial(torch.optim.Adam, lr=1e-3),
                                lr_scheduler=torch.optim.lr_scheduler.ReduceLROnPlateau)

    torch.manual_seed(0)
    module = make()
    before = {k: v.clone() for k, v in module.state_dict().items()}
    with pytest.raises(ConfigError, match="set fast.steps_per_batch=1 for a scheduler frequency or ReduceLROnPlateau"):
        fit(data, tmp_path, 7, lambda: module, 1)
    assert all(torch.equal(v, module.state_dict()[k]) for k, v in before.items())
