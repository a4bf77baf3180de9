"""Several optimizer steps per Lightning batch: the suite's loop at the plain loop's cost.

Lightning's automatic optimization spends Python on every step (hooks, the closure, progress
tracking); benchmarks/throughput.py measures what running it once per k steps buys. With
``fast.steps_per_batch: k`` the train loader hands the module k batches at a time, and the module
runs the k steps itself: ``loss.backward()`` (what ``manual_backward`` runs at 32 bits in one
process, less its ``on_before_backward`` / ``on_after_backward`` hooks, which nothing in the suite
uses) and the LightningOptimizer's ``step``, which keeps the global step, the precision plugin and
the ``on_before_optimizer_step`` hook (L2, the ADMM penalty, step masks). Lightning's per-batch
machinery then runs once per k steps.

The steps are the automatic loop's, bit for bit (tests/test_chunks.py): the same batches in the
same order, zero_grad / forward / backward / step, step-interval schedulers after each step and
epoch-interval ones after the epoch's last batch, ADMM's Z/U update after the same step, a stop
right after the step that asked for it, and the same logged steps.

Only where Lightning's per-batch settings cannot tell the difference: in-memory data, one process,
32-bit precision, no gradient accumulation or clipping, and whole epochs. Elsewhere (``reason``
names the setting) the automatic loop runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytorch_lightning as pl
import torch

from admm_pruning.foundations.errors import ConfigError


class ChunkedModule(Protocol):
    """What a chunk needs of its LightningModule (training/modules.py's ClassifierModule), named
    here so that the loop does not import the module that calls it."""

    trainer: pl.Trainer

    def optimizers(self) -> Any: ...

    def task_loss(self, batch: Any) -> torch.Tensor: ...

    def after_optimizer_step(self) -> None: ...


class Chunks:
    """A loader's batches, k at a time (the last chunk of an epoch may be shorter). ``sampler``
    is the loader's, so that Lightning's ``set_epoch`` reaches it and shuffles each epoch."""

    def __init__(self, loader: Any, k: int) -> None:
        self.loader, self.k = loader, k
        self.sampler = loader.sampler

    def __len__(self) -> int:
        return -(-len(self.loader) // self.k)

    def __iter__(self) -> Iterator[list[Any]]:
        chunk: list[Any] = []
        for batch in self.loader:
            chunk.append(batch)
            if len(chunk) == self.k:
                yield chunk
                chunk = []
        if chunk:
            yield chunk


def reason(trainer: pl.Trainer, in_memory: bool) -> str | None:
    """Why k steps per batch would change what Lightning does, or None where they would not."""
    checks = {
        "the data is not in memory": not in_memory,
        "more than one process": trainer.world_size > 1,
        f"trainer.precision={trainer.precision}": trainer.precision not in ("32-true", "32"),
        f"trainer.accumulate_grad_batches={trainer.accumulate_grad_batches}": trainer.accumulate_grad_batches != 1,
        f"trainer.gradient_clip_val={trainer.gradient_clip_val}": trainer.gradient_clip_val is not None,
        f"trainer.limit_train_batches={trainer.limit_train_batches}": trainer.limit_train_batches != 1.0,
        f"trainer.max_steps={trainer.max_steps}": trainer.max_steps != -1,
        f"trainer.val_check_interval={trainer.val_check_interval}": trainer.val_check_interval != 1.0,
    }
    return next((what for what, bad in checks.items() if bad), None)


def check_schedulers(trainer: pl.Trainer) -> None:
    """run_chunk steps each scheduler after every step or epoch; refuse, before the first step,
    one that needs Lightning's own stepping (a frequency, or ReduceLROnPlateau's monitor)."""
    if any(c.frequency != 1 or isinstance(c.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
           for c in trainer.lr_scheduler_configs):  # Lightning marks reduce_on_plateau only when it steps them
        raise ConfigError("fast.steps_per_batch > 1 steps schedulers every step or epoch: "
                          "set fast.steps_per_batch=1 for a scheduler frequency or ReduceLROnPlateau")


def run_chunk(module: ChunkedModule, chunk: list[Any], batch_idx: int) -> None:
    """The chunk's optimizer steps, as the automatic loop would make them one batch at a time."""
    trainer = module.trainer
    configs = trainer.lr_scheduler_configs
    opt = module.optimizers()
    done = 0
    for batch in chunk:
        opt.zero_grad()
        module.task_loss(batch).backward()  # manual_backward's work at 32 bits in one process, less its hooks
        opt.step()
        done += 1
        for c in configs:
            if c.interval == "step":
                c.scheduler.step()
        module.after_optimizer_step()
        if trainer.should_stop:
            break
    if done == len(chunk) and batch_idx + 1 == trainer.num_training_batches:
        for c in configs:
            if c.interval == "epoch":
                c.scheduler.step()
    # Lightning counts one batch here; its loggers' step (and its checkpoint) count optimizer steps.
    trainer.fit_loop.epoch_loop._batches_that_stepped += done - 1


def carry_step_count(trainer: pl.Trainer, steps: int) -> None:
    """Give the loop in use the optimizer-step count a checkpoint was written at. Lightning
    counts automatic and manual steps apart, so a checkpoint of one loop would resume in the
    other at step 0 (and an ADMM stage would restart its Z/U schedule there)."""
    loop = trainer.fit_loop.epoch_loop
    if trainer.lightning_module.automatic_optimization:
        total = loop.automatic_optimization.optim_progress.optimizer.step.total
    else:
        total = loop.manual_optimization.optim_step_progress.total
    total.ready = total.completed = steps
