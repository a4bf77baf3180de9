"""Progress output of long stages: the progress bar decision, one log line per ADMM iteration,
per Han round and per progressive ADMM round."""

from __future__ import annotations

import io
import json
import logging
import re
import shutil
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from admm_pruning.models.lenet import LeNet300
from admm_pruning.pipeline import run_experiment
from admm_pruning.pruners import admm as admm_module
from admm_pruning.pruners.admm import ADMMModule
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.training.context import StageContext, progress_bar_wanted
from conftest import TINY, TINY_BASE, compose_cfg

ADMM_LINE = re.compile(r"ADMM iteration (\d+)/(\d+): rho (\S+), primal (\S+), dual (\S+), val/acc (.+), "
                       r"\d+ s elapsed, ~\d+ s left$")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("setting, tty, env, wanted", [
    ("auto", True, {}, True),
    ("auto", False, {}, False),              # piped into a log file
    ("auto", True, {"CI": "true"}, False),   # CI output, even on a pseudo-terminal
    ("auto", True, {"CI": "false"}, True),
    (True, False, {"CI": "1"}, True),        # an explicit setting wins
    (False, True, {}, False),
])
def test_progress_bar_only_in_an_interactive_terminal_outside_ci(setting, tty, env, wanted):
    stream = Terminal() if tty else io.StringIO()
    assert progress_bar_wanted(setting, stream, env) is wanted


def test_stage_trainers_resolve_auto_at_run_time(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    ctx = StageContext(data=None, trainer_kwargs={"enable_progress_bar": "auto"}, seed=0, experiment="x")  # type: ignore[arg-type]
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert ctx._trainer_kwargs()["enable_progress_bar"] is True
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert ctx._trainer_kwargs()["enable_progress_bar"] is False


def admm_fit(iterations: int, epochs: int) -> ADMMModule:
    """LeNet-300 on 64 random images, 8 steps per epoch, a Z/U update every 4 steps, validated
    after every epoch."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g))
    schedule = ADMMSchedule(optimizer=lambda p: torch.optim.SGD(p, lr=0.01), iterations=iterations,
                            epochs_per_iteration=0.5, rho=1e-2, batch_size=8)
    module = ADMMModule(LeNet300(), schedule, {"fc1": 0.1, "fc2": 0.2}, steps_per_epoch=8)
    trainer = pl.Trainer(accelerator="cpu", max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
    trainer.fit(module, DataLoader(data, batch_size=8), DataLoader(data, batch_size=32))
    return module


def test_one_admm_line_per_iteration_with_the_residual_sums_and_latest_validation(caplog):
    """Updates after steps 4 and 8 precede the first validation (end of epoch 1); those after
    steps 12 and 16 see epoch 1's."""
    caplog.set_level(logging.INFO, logger="admm_pruning")
    module = admm_fit(iterations=4, epochs=2)
    lines = [ADMM_LINE.search(r.getMessage()) for r in caplog.records if "ADMM iteration" in r.getMessage()]
    assert all(lines) and len(lines) == len(module.history) == 4, caplog.text
    for m, h in zip(lines, module.history, strict=True):
        assert (int(m[1]), int(m[2])) == (h["iteration"], 4)
        assert m[3] == f"{h['rho']:.3g}"
        assert m[4] == f"{sum(h['primal'].values()):.4g}" and m[5] == f"{sum(h['dual'].values()):.4g}"
    assert [m[6] for m in lines[:2]] == ["-", "-"]
    assert all(re.fullmatch(r"0\.\d{4} \(epoch 1\)|1\.0000 \(epoch 1\)", m[6]) for m in lines[2:]), caplog.text


def test_admm_lines_only_from_rank_zero(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="admm_pruning")
    monkeypatch.setattr(admm_module, "world", lambda: (1, 2))
    module = admm_fit(iterations=2, epochs=1)
    assert len(module.history) == 2 and "ADMM iteration" not in caplog.text


def fake_cfg(fake_data_dir: Path, out_dirs: list[str], *extra: str):
    return compose_cfg(["data=mnist", f"data.data_dir={fake_data_dir}", "data.verify_md5=false", "data.val_size=200",
                        "data.download=false", *out_dirs, *extra])


def round_lines(caplog: pytest.LogCaptureFixture, pruner: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(f"{pruner} round")]


def test_one_line_per_han_round(fake_data_dir, out_dirs, caplog):
    caplog.set_level(logging.INFO, logger="admm_pruning")
    s = run_experiment(fake_cfg(fake_data_dir, out_dirs, "experiment=lenet300_han_12x", *TINY_BASE,
                                "retrain.epochs=1", "pruner.rounds=2", "pruner.epochs_per_round=1"))
    rounds = json.loads((Path(s["stage_dirs"]["han"]) / "metrics.json").read_text())["rounds"]
    lines = round_lines(caplog, "han")
    assert len(lines) == 2, caplog.text
    kept = sum(rounds[0]["kept"].values()) / 266200
    assert lines[0].startswith(f"han round 1/2: keeps {100 * kept:.2f}% of the pruned layers' weights "
                               f"({1 / kept:.2f}x), val acc {rounds[0]['val_acc']:.4f} after retraining, ")
    assert "test_acc" not in rounds[0]  # intermediate rounds are scored on validation; test is read once
    assert lines[1].startswith(f"han round 2/2: keeps {100 / s['compression']:.2f}% of the pruned layers' weights "
                               f"({s['compression']:.2f}x), retrained by the retrain stage, ")


def test_one_line_per_progressive_round(fake_data_dir, out_dirs, caplog):
    """Two rounds (5x, then the final 22.9x), trained; then, with the prune stage deleted, the
    same rounds again from their own cache."""
    caplog.set_level(logging.INFO, logger="admm_pruning")
    cfg = fake_cfg(fake_data_dir, out_dirs, "experiment=lenet300_admm_23x", "pruner=admm_progressive", *TINY,
                   "pruner.step=5", "pruner.round_retrain_epochs=1")
    prune_dir = Path(run_experiment(cfg)["stage_dirs"]["admm_progressive"])
    rounds = json.loads((prune_dir / "metrics.json").read_text())["rounds"]
    expected = [f"admm_progressive round {r['round']}/2: target {r['compression']:.2f}x, val acc {r['val_acc']:.4f}, "
                for r in rounds]
    assert len(expected) == 2 and len(re.findall("ADMM iteration", caplog.text)) == 4
    first = round_lines(caplog, "admm_progressive")
    caplog.clear()
    shutil.rmtree(prune_dir)
    run_experiment(cfg)
    for lines, how in ((first, "trained"), (round_lines(caplog, "admm_progressive"), "cached")):
        assert len(lines) == 2, (how, lines)
        assert all(line.startswith(f"{e}{how}, ") for line, e in zip(lines, expected, strict=True)), (how, lines)


EPOCH_LINE = re.compile(r"admm epoch (\d+)/(\d+): loss (\d\.\d{4}), val/acc (0\.\d{4}|1\.0000), "
                        r"\d+ s elapsed, ~\d+ s left$")


def test_one_line_per_epoch_with_the_mean_loss_and_the_epochs_validation(caplog):
    caplog.set_level(logging.INFO, logger="admm_pruning")
    admm_fit(iterations=100, epochs=3)
    lines = [EPOCH_LINE.search(r.getMessage()) for r in caplog.records if " epoch " in r.getMessage()
             and "ADMM iteration" not in r.getMessage()]
    assert len(lines) == 3 and all(lines), caplog.text
    assert [(int(m[1]), int(m[2])) for m in lines] == [(1, 3), (2, 3), (3, 3)]


def test_a_resumed_stage_says_so_and_its_admm_lines_keep_the_last_validation(caplog, tmp_path):
    """After a resume the ADMM line shows the validation restored with the checkpoint, not '-'."""
    caplog.set_level(logging.INFO, logger="admm_pruning")
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(64, 1, 28, 28, generator=g), torch.randint(0, 10, (64,), generator=g))
    schedule = ADMMSchedule(optimizer=lambda p: torch.optim.SGD(p, lr=0.01), iterations=100,
                            epochs_per_iteration=0.5, rho=1e-2, batch_size=8)
    kwargs = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                  num_sanity_val_steps=0, default_root_dir=tmp_path)
    loaders = (DataLoader(data, batch_size=8), DataLoader(data, batch_size=32))
    trainer = pl.Trainer(max_epochs=1, **kwargs)
    trainer.fit(ADMMModule(LeNet300(), schedule, {"fc1": 0.1}, steps_per_epoch=8), *loaders)
    trainer.save_checkpoint(tmp_path / "last.ckpt")
    caplog.clear()
    pl.Trainer(max_epochs=2, **kwargs).fit(ADMMModule(LeNet300(), schedule, {"fc1": 0.1}, steps_per_epoch=8),
                                           *loaders, ckpt_path=tmp_path / "last.ckpt")
    assert "resuming admm from epoch 2 (optimizer step 8)" in caplog.text
    first = next(ADMM_LINE.search(r.getMessage()) for r in caplog.records if "ADMM iteration" in r.getMessage())
    assert re.fullmatch(r"(0\.\d{4}|1\.0000) \(epoch 1\)", first[6]), caplog.text
