"""One Lightning run per stage: build the Trainer, fit (resuming if asked), evaluate."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from torch import nn

from .data import MNISTData
from .loggers import LoggerFactory, close_logger
from .modules import ClassifierModule

# Data are in-memory tensors: loader workers would only add overhead.
warnings.filterwarnings("ignore", message=".*does not have many workers.*")
warnings.filterwarnings("ignore", message=".*LeafSpec.*")
# Lightning's per-Trainer banners (GPU available, tips) would repeat for every stage.
logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)

EVAL_BATCH = 1000


@dataclass
class StageContext:
    """What every stage needs besides its own settings."""

    data: MNISTData
    trainer_kwargs: dict[str, Any]
    seed: int
    experiment: str
    logger_factory: LoggerFactory | None = None
    tags: list[str] = field(default_factory=list)

    def trainer(self, stage: str, stage_dir: Path, **limits: Any) -> pl.Trainer:
        # One rolling checkpoint, checkpoints/last.ckpt, rewritten every epoch for resume.
        checkpoint = ModelCheckpoint(
            dirpath=stage_dir / "checkpoints", filename="last", monitor=None, save_top_k=1,
            every_n_epochs=1, save_on_train_epoch_end=True, enable_version_counter=False)
        logger = False
        if self.logger_factory is not None:
            logger = self.logger_factory(stage=stage, group=self.experiment,
                                         name=f"{self.experiment}-{stage}", tags=self.tags,
                                         save_dir=str(stage_dir))
        return pl.Trainer(**self.trainer_kwargs, **limits, logger=logger, callbacks=[checkpoint],
                          default_root_dir=str(stage_dir))

    def fit(self, module: ClassifierModule, stage: str, stage_dir: Path, resume: Path | None,
            batch_size: int, **limits: Any) -> None:
        pl.seed_everything(self.seed, workers=True, verbose=False)
        trainer = self.trainer(stage, stage_dir, **limits)
        val = self.data.loader("val", EVAL_BATCH) if len(self.data.setup().val) else None
        try:
            trainer.fit(module, train_dataloaders=self.data.loader("train", batch_size, True, self.seed),
                        val_dataloaders=val, ckpt_path=str(resume) if resume else None)
        finally:
            close_logger(trainer.logger)

    def evaluate(self, model: nn.Module, split: str = "test") -> float:
        """Top-1 accuracy (a fraction) of ``model`` on a split, through torchmetrics."""
        module = ClassifierModule(model, optimizer=None)  # type: ignore[arg-type]
        trainer = pl.Trainer(**{**self.trainer_kwargs, "enable_progress_bar": False},
                             logger=False, enable_checkpointing=False)
        out = trainer.test(module, dataloaders=self.data.loader(split, EVAL_BATCH), verbose=False)
        return float(out[0]["test/acc"])
