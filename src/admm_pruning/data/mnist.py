"""MNIST held in memory as scaled tensors and batched by indexing.

Two protocols:
- ``mnist``: the official 60k/10k split (5k of the 60k carved off for validation, as the TF
  code did), read from IDX files or downloaded through torchvision.
- ``mnist10k``: the 10k official test images only, split by a seeded permutation into 7,000
  train and 3,000 test; validation is carved from the 7,000 (docs/reference.md, Data).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from admm_pruning.data.mnist_files import (
    TEST_FILES,
    TRAIN_FILES,
    download_files,
    find_file,
    load_idx_pair,
    missing_message,
)
from admm_pruning.foundations.errors import DataError

__all__ = ["TEST_FILES", "InMemoryData", "MNISTData", "Split", "default_data_dir", "load_idx_pair"]

MEAN, STD = 0.1307, 0.3081
CAFFE_SCALE = 0.00390625  # 1/256: the `scale` of the data layer in Caffe's lenet_train_test.prototxt

# How the originals fed pixels (bytes 0..255) to their networks; conf/model/*.yaml names the one
# that goes with each network, since it belongs to the network's original, not to the data set.
PIXEL_SCALES = {
    "standardize": "(x/255 - 0.1307) / 0.3081, the PyTorch MNIST convention",
    "unit": "x/255 in [0, 1], the authors' TF code",
    "caffe": "x * 0.00390625 in [0, 255/256], Caffe's LeNet example",
}

def default_data_dir() -> str:
    return os.environ.get("DATA_DIR", "./data")


def preprocessing(pixel_scale: str) -> dict:
    """What a deployed model must be fed, in every export: from bytes 0..255 of a (1, 28, 28) digit,
    x = (bytes * scale - mean) / std, and the class each output stands for."""
    check_pixel_scale(pixel_scale)
    scale = CAFFE_SCALE if pixel_scale == "caffe" else 1 / 255
    mean, std = (MEAN, STD) if pixel_scale == "standardize" else (0.0, 1.0)
    return {"input": "grayscale bytes 0..255, 28x28 (MNIST)", "input_shape": [1, 28, 28], "pixel_scale": pixel_scale,
            "formula": PIXEL_SCALES[pixel_scale], "scale": scale, "mean": [mean], "std": [std],
            "classes": [str(d) for d in range(10)]}


def check_pixel_scale(pixel_scale: str) -> None:
    """Refuse an unknown scaling up front: a typo would otherwise train on the wrong inputs."""
    if pixel_scale not in PIXEL_SCALES:
        raise DataError(f"data.pixel_scale={pixel_scale!r}: expected one of {', '.join(PIXEL_SCALES)}")


def normalise(images: torch.Tensor, pixel_scale: str = "standardize") -> torch.Tensor:
    """Byte images (N, 28, 28) as float (N, 1, 28, 28), scaled as ``pixel_scale`` says."""
    check_pixel_scale(pixel_scale)
    x = images.float()
    if pixel_scale == "standardize":
        x = (x / 255.0 - MEAN) / STD
    elif pixel_scale == "unit":
        x = x / 255.0
    else:
        x = x * CAFFE_SCALE
    return x.unsqueeze(1).contiguous()


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)


class _TensorBatches(Dataset):
    """Indexing with a whole index tensor returns a whole batch: no per-sample work."""

    def __init__(self, split: Split) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split.x[idx], self.split.y[idx]


class BatchIndexSampler(Sampler):
    """Yields index tensors, one per batch; the shuffle is seeded by (seed, epoch).

    Lightning calls ``set_epoch`` each epoch, so a resumed run sees the same order as an
    uninterrupted one.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0,
                 device: torch.device | str = "cpu") -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.device = torch.device(device)  # where the indices go: the data's device
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        # A generator: the order is drawn at the first next(), after Lightning's set_epoch.
        # (On resume Lightning creates the iterator before it calls set_epoch.)
        # Drawn on the CPU, so the order is the same on every device; moved in one copy per epoch.
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        yield from order.to(self.device).split(self.batch_size)


class InMemoryData:
    """Train / val / test ``Split`` tensors that ``setup`` fills; batches are whole index tensors."""

    train: Split | None = None
    val: Split | None = None
    test: Split | None = None

    def setup(self) -> InMemoryData:
        raise NotImplementedError

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        data = getattr(self.setup(), split)
        sampler = BatchIndexSampler(len(data), batch_size, shuffle, seed, device=data.x.device)
        return DataLoader(_TensorBatches(data), batch_size=None, sampler=sampler)

    def to_device(self, device: torch.device | str) -> InMemoryData:
        """Every split moved to ``device`` once (a no-op where they are already): a GPU then
        trains with no host-to-device copy per batch, each batch an index_select of resident
        tensors with indices that come one epoch at a time."""
        self.setup()
        device = torch.device(device)
        for name in ("train", "val", "test"):
            split = getattr(self, name)
            if split is not None and split.x.device != device:
                setattr(self, name, Split(split.x.to(device), split.y.to(device)))
        return self

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.setup().train) // batch_size)


class MNISTData(InMemoryData):
    """Train / val / test splits as in-memory tensors, for either protocol.

    ``pixel_scale`` (see PIXEL_SCALES) follows the network's original: the configs take it from
    ``model.pixel_scale``. ``verify_md5=False`` skips the official-md5 check, for generated data.
    """

    def __init__(
        self,
        protocol: str = "mnist",
        data_dir: str | None = None,
        split_seed: int = 0,
        val_size: int = 5000,
        download: bool = True,
        name: str | None = None,
        pixel_scale: str = "standardize",
        verify_md5: bool = True,
    ) -> None:
        if protocol not in ("mnist", "mnist10k"):
            raise DataError(f"data.protocol={protocol!r}: expected 'mnist' or 'mnist10k'")
        check_pixel_scale(pixel_scale)
        self.pixel_scale = pixel_scale
        self.protocol = protocol
        self.name = name or protocol
        self.root = Path(data_dir or default_data_dir())
        self.split_seed = split_seed
        self.val_size = val_size
        self.download = download
        self.verify_md5 = verify_md5

    def preprocessing(self) -> dict:
        return preprocessing(self.pixel_scale)

    def check(self) -> None:
        """Fail before training if the files are missing and cannot be downloaded (only the
        missing ones are fetched: mnist10k never needs the training set)."""
        needed = TEST_FILES if self.protocol == "mnist10k" else TRAIN_FILES + TEST_FILES
        missing = [s for s in needed if find_file(self.root, s) is None]
        if not missing:
            return
        error = None
        if self.download:
            try:
                download_files(self.root, missing)
            except Exception as exc:  # noqa: BLE001 - any download failure ends in the same message
                error = " ".join(str(exc).split())[:300] or type(exc).__name__
            missing = [s for s in needed if find_file(self.root, s) is None]
        if missing:
            raise DataError(missing_message(self.root, missing, self.protocol, error))

    def setup(self) -> MNISTData:
        if self.train is not None:
            return self
        self.check()
        test_x, test_y = load_idx_pair(self.root, TEST_FILES, self.verify_md5)
        if self.protocol == "mnist10k":
            perm = torch.randperm(len(test_y), generator=torch.Generator().manual_seed(self.split_seed))
            train_idx, test_idx = perm[:7000], perm[7000:]
            x, y = normalise(test_x, self.pixel_scale), test_y.long()
            self.test = Split(x[test_idx], y[test_idx])
        else:
            train_x, train_y = load_idx_pair(self.root, TRAIN_FILES, self.verify_md5)
            x, y = normalise(train_x, self.pixel_scale), train_y.long()
            train_idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.split_seed))
            self.test = Split(normalise(test_x, self.pixel_scale), test_y.long())
        if not 0 <= self.val_size < len(train_idx):
            raise DataError(f"data.val_size={self.val_size}: must be in [0, {len(train_idx)})")
        cut = len(train_idx) - self.val_size
        self.train = Split(x[train_idx[:cut]], y[train_idx[:cut]])
        self.val = Split(x[train_idx[cut:]], y[train_idx[cut:]])
        return self
