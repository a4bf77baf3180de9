"""One Lightning run per stage: build the Trainer, fit (resuming if asked), evaluate."""

from __future__ import annotations

import logging
import os
import sys
import uuid
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

import pytorch_lightning as pl
from hydra.utils import instantiate
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import Logger
from torch import nn
from torch.utils.data import DataLoader

from admm_pruning.data.mnist import InMemoryData
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.training import chunks
from admm_pruning.training.distributed import rank_sharded
from admm_pruning.training.fast import FastPath, skip_gpu_probe_without_gpu
from admm_pruning.training.loggers import LoggerFactory, RunIdentity, close_logger
from admm_pruning.training.modules import ClassifierModule

# Data are in-memory tensors: loader workers would only add overhead.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
# Lightning's per-Trainer banners (GPU available, tips) would repeat for every stage.
logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)

EVAL_BATCH = 1000


def progress_bar_wanted(setting: bool | str, stream: TextIO | None = None,
                        env: Mapping[str, str] | None = None) -> bool:
    """``enable_progress_bar: auto`` resolved where the run starts: a bar only for a person at an
    interactive terminal (Lightning's bar writes to stdout); redrawn into a log file or CI output
    it is noise. CI is any value of the CI variable other than empty, 0 or false."""
    if setting != "auto":
        return bool(setting)
    env = os.environ if env is None else env
    stream = sys.stdout if stream is None else stream
    in_ci = env.get("CI", "").lower() not in ("", "0", "false")
    return not in_ci and stream.isatty()


class DataModule(Protocol):
    """The interface of data.MNISTData and imagenet.ImageNetData / FakeImageData.

    A data module may also set ``eval_batch_size`` (default EVAL_BATCH; ImageNet uses less).
    """

    name: str
    split_seed: int

    def setup(self) -> DataModule: ...

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader: ...

    def steps_per_epoch(self, batch_size: int) -> int: ...


def stage_run_id(stage_dir: Path, stage: str) -> str:
    """The W&B run id of a stage's training, kept in its folder: a killed stage that resumes
    continues the same run instead of splitting its curves over two."""
    path = stage_dir / f".wandb-run-{stage}"
    if not path.is_file():
        stage_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(uuid.uuid4().hex[:16])
    return path.read_text().strip()


@dataclass
class StageContext:
    """What every stage needs besides its own settings.

    ``trainer_kwargs`` are pl.Trainer's; a ``strategy`` given as a Hydra node (with _target_) is
    instantiated afresh for every Trainer. Under DDP, batch sizes are global (the papers'
    recipes): each of the W processes loads batch_size / W, so an epoch has as many optimizer
    steps as on one device and every step and epoch count of a recipe keeps its meaning.
    """

    data: DataModule
    trainer_kwargs: dict[str, Any]
    seed: int
    experiment: str
    logger_factory: LoggerFactory | None = None
    tags: list[str] = field(default_factory=list)
    identity: RunIdentity | None = None  # W&B names, group, tags and config; set by the pipeline
    # The open W&B run of the stage in progress: left open after training, so that the stage's
    # artifact is logged from it when the stage ends (wandb_runs.finish_stage).
    stage_logger: Logger | None = field(default=None, repr=False)
    fast: FastPath = field(default_factory=FastPath)  # kernel choices for every fit (training/fast.py)

    @property
    def run_identity(self) -> RunIdentity:
        """The pipeline's naming, else runs named after the experiment."""
        return self.identity or RunIdentity(self.experiment, self.experiment, self.tags)

    def trainer(self, stage: str, stage_dir: Path, **limits: Any) -> pl.Trainer:
        # One rolling checkpoint, checkpoints/last.ckpt, rewritten every epoch for resume.
        checkpoint = ModelCheckpoint(
            dirpath=stage_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
            every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False)
        logger = False
        if self.logger_factory is not None:
            close_logger(self.stage_logger)  # the run of this stage's previous training (pruning rounds)
            logger = self.stage_logger = self.logger_factory(
                stage=stage, save_dir=str(stage_dir), run_id=stage_run_id(stage_dir, stage),
                **self.run_identity.for_stage(stage))
        return pl.Trainer(**self._trainer_kwargs(), **limits, logger=logger, callbacks=[checkpoint],
                          default_root_dir=str(stage_dir))

    def _trainer_kwargs(self) -> dict[str, Any]:
        kwargs = dict(self.trainer_kwargs)
        kwargs["enable_progress_bar"] = progress_bar_wanted(kwargs.get("enable_progress_bar", "auto"))
        if isinstance(kwargs.get("strategy"), dict):
            kwargs["strategy"] = instantiate(kwargs["strategy"])
        return kwargs

    def steps_per_epoch(self, batch_size: int) -> int:
        """Optimizer steps per epoch: batches, divided by ``accumulate_grad_batches`` (Lightning
        steps on the last, partial group of an epoch too)."""
        accumulate = int(self.trainer_kwargs.get("accumulate_grad_batches") or 1)
        return -(-self.data.steps_per_epoch(batch_size) // accumulate)

    @property
    def eval_batch_size(self) -> int:
        return getattr(self.data, "eval_batch_size", EVAL_BATCH)

    def fit(self, module: ClassifierModule, stage: str, stage_dir: Path, resume: Path | None,
            batch_size: int, **limits: Any) -> None:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        module.fast = self.fast
        skip_gpu_probe_without_gpu()
        trainer = self.trainer(stage, stage_dir, **limits)
        processes = trainer.num_nodes * trainer.num_devices
        if batch_size % processes:
            raise ConfigError(f"stage {stage}: batch size {batch_size} is global and must be divisible by "
                              f"the {processes} processes (trainer.devices x trainer.num_nodes)")
        self.place_data(trainer)
        val = self.data.loader("val", self.eval_batch_size) if len(self.data.setup().val) else None
        train = self.data.loader("train", batch_size // processes, True, self.seed)
        k = self.fast.steps_per_batch
        in_memory = isinstance(self.data, InMemoryData)
        module.automatic_optimization = k == 1 or chunks.reason(trainer, in_memory) is not None
        if not module.automatic_optimization:
            train = chunks.Chunks(train, k)
        # weights_only: a resumed checkpoint can hold tensors and plain data, never code. The W&B
        # run stays open until the stage ends (see stage_logger).
        with warnings.catch_warnings():
            # k steps per batch: an epoch has fewer batches than log_every_n_steps, which counts
            # optimizer steps here (ClassifierModule.logs_this_step), so Lightning's notice is moot
            warnings.filterwarnings("ignore", message=".*smaller than the logging interval.*")
            trainer.fit(module, train_dataloaders=train, val_dataloaders=val,
                        ckpt_path=str(resume) if resume else None, weights_only=True)

    def place_data(self, trainer: pl.Trainer) -> None:
        """In-memory data (data.InMemoryData) moves to an accelerator once, before its first
        batch: batches are then made there, with no host copy per step."""
        device = trainer.strategy.root_device
        if device.type != "cpu" and hasattr(self.data, "to_device"):
            self.data.to_device(device)

    def scores(self, model: nn.Module, split: str = "test") -> dict[str, float]:
        """Top-1 (``acc``) and, with >= 5 classes, top-5 (``acc_top5``) accuracy of ``model`` on a
        split, as fractions, through torchmetrics. Under DDP each rank scores a disjoint shard and
        the counts are summed: every image exactly once."""
        module = ClassifierModule(model, optimizer=None)  # type: ignore[arg-type]
        trainer = pl.Trainer(**{**self._trainer_kwargs(), "enable_progress_bar": False,
                                "use_distributed_sampler": False},
                             logger=False, enable_checkpointing=False)
        self.place_data(trainer)
        loader = rank_sharded(self.data.loader(split, self.eval_batch_size))
        out = trainer.test(module, dataloaders=loader, verbose=False)[0]
        return {k.removeprefix("test/"): float(v) for k, v in out.items() if k.startswith("test/")}

    def val_score(self, model: nn.Module) -> float | None:
        """Top-1 on the validation split, the only score a pruner may choose or report rounds by;
        None where the split is empty."""
        return self.evaluate(model, "val") if len(self.data.setup().val) else None

    def evaluate(self, model: nn.Module, split: str = "test") -> float:
        """Top-1 accuracy (a fraction) of ``model`` on a split."""
        return self.scores(model, split)["acc"]
