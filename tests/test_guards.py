"""The training step's bookkeeping: a non-finite loss caught without a per-step host sync, and
train/loss handed to Lightning only on the steps its logger writes."""

from __future__ import annotations

import csv
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

from admm_pruning.models.lenet import LeNet300
from admm_pruning.training.guards import LossWatch, NonFiniteLossError
from admm_pruning.training.modules import ClassifierModule


def loader(n: int = 48, batch: int = 8, nan_batch: int | None = None) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 1, 28, 28, generator=g)
    if nan_batch is not None:
        x[nan_batch * batch] = float("nan")
    return DataLoader(TensorDataset(x, torch.randint(0, 10, (n,), generator=g)), batch_size=batch)


def module() -> ClassifierModule:
    torch.manual_seed(0)
    return ClassifierModule(LeNet300(), partial(torch.optim.SGD, lr=0.01), stage="retrain")


def test_the_watch_names_the_first_non_finite_loss_and_its_step():
    watch = LossWatch("admm", start=100)
    for value in (1.0, 2.0):
        watch.update(torch.tensor(value))
    watch.check()  # all finite so far
    for value in (float("inf"), 3.0, float("nan")):
        watch.update(torch.tensor(value))
    with pytest.raises(NonFiniteLossError, match=r"stage admm: loss is inf at step 102 "):
        watch.check()


def test_a_training_step_never_reads_the_loss_back_outside_logging_steps(monkeypatch):
    """A read of a tensor's value (bool, item, tolist) is a host sync on a GPU."""
    m = module()
    m._trainer = SimpleNamespace(log_every_n_steps=50, logger=None, global_step=0)

    def sync(*_args):
        raise AssertionError("host sync in the training step")

    x, y = next(iter(loader(nan_batch=0)))
    for name in ("__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, sync)
    m.training_step((x, y), 0)  # a NaN loss, not read back here
    monkeypatch.undo()
    with pytest.raises(NonFiniteLossError, match=r"stage retrain: loss is nan at step 0 "):
        m.loss_watch.check()


def test_train_loss_is_logged_only_on_the_steps_the_logger_writes(tmp_path: Path, monkeypatch):
    m = module()
    calls = []
    log = m.log_step
    monkeypatch.setattr(m, "log_step", lambda values, step: (calls.append(*values), log(values, step)))
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, log_every_n_steps=2, enable_checkpointing=False,
                         logger=CSVLogger(tmp_path), enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(m, loader())
    assert calls == ["train/loss"] * 3  # 6 steps, every 2nd
    rows = list(csv.DictReader(open(next(tmp_path.rglob("metrics.csv")))))
    assert [int(r["step"]) for r in rows if r.get("train/loss")] == [1, 3, 5]


def test_a_nan_loss_stops_the_fit_before_its_epoch_is_checkpointed(tmp_path: Path):
    ckpt = ModelCheckpoint(dirpath=tmp_path, filename="last", save_on_train_epoch_end=True, every_n_epochs=1)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=2, log_every_n_steps=50, callbacks=[ckpt], logger=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 3 "):
        trainer.fit(module(), loader(nan_batch=3))
    assert not list(tmp_path.glob("*.ckpt"))
