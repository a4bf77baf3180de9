"""MNIST held in memory as scaled tensors and batched by indexing.

Two protocols:
- ``mnist``: the official 60k/10k split (5k of the 60k carved off for validation, as the TF
  code did), read from IDX files or downloaded through torchvision.
- ``mnist10k``: the 10k official test images only, split by a seeded permutation into 7,000
  train and 3,000 test; validation is carved from the 7,000 (see shared/data/mnist/README.md).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

MEAN, STD = 0.1307, 0.3081
CAFFE_SCALE = 0.00390625  # 1/256: the `scale` of the data layer in Caffe's lenet_train_test.prototxt

# How the originals fed pixels (bytes 0..255) to their networks; conf/model/*.yaml names the one
# that goes with each network, since it belongs to the network's original, not to the data set.
PIXEL_SCALES = {
    "standardize": "(x/255 - 0.1307) / 0.3081, the PyTorch MNIST convention",
    "unit": "x/255 in [0, 1], the authors' TF code",
    "caffe": "x * 0.00390625 in [0, 255/256], Caffe's LeNet example",
}

# md5 of the official files, gzipped (as torchvision downloads and checks them) and uncompressed
# (as shared/data/mnist holds the training set); shared/data/mnist/README.md lists both.
MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
}
TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


class DataError(RuntimeError):
    """Data set missing or corrupt: raised before any training starts."""


def default_data_dir() -> str:
    return os.environ.get("DATA_DIR", "./data")


def _candidate_dirs(root: Path) -> list[Path]:
    # The shared folder's layout (<root>/mnist) and torchvision's (<root>/MNIST/raw).
    return [root / "mnist", root / "MNIST" / "raw", root]


def _find(root: Path, stem: str) -> Path | None:
    for d in _candidate_dirs(root):
        for name in (stem + ".gz", stem):
            if (d / name).is_file():
                return d / name
    return None


def _read_idx(path: Path, verify_md5: bool = True) -> torch.Tensor:
    """One IDX file, checked against the official md5 (gzipped or not) unless ``verify_md5`` is
    off, which only generated test data needs: a real run never reads unchecked bytes."""
    raw = path.read_bytes()
    if verify_md5:
        expected = MD5[path.name]
        got = hashlib.md5(raw).hexdigest()
        if got != expected:
            raise DataError(f"{path}: md5 {got} does not match the official {expected}; "
                            "the file is corrupt, truncated or not MNIST. Delete it and fetch it again.")
    if path.suffix == ".gz":
        raw = gzip.decompress(raw)
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    if magic >> 8 != 0x08 or ndim not in (1, 3):
        raise DataError(f"{path}: not an IDX file of unsigned bytes (magic {magic:#x})")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise DataError(f"{path}: truncated ({data.size} values, header says {dims})")
    return torch.from_numpy(data.copy()).view(*dims)


def _missing_message(root: Path, missing: list[str], protocol: str) -> str:
    searched = ", ".join(str(d) for d in _candidate_dirs(root))
    msg = (f"MNIST files missing for data={protocol}: {', '.join(m + '.gz' for m in missing)} "
           f"not found under DATA_DIR={root} (searched {searched}) and could not be downloaded.")
    if protocol == "mnist":
        msg += (" Put the official IDX files there, or run on the 10k test images only with "
                "DATA=mnist10k (make) / data=mnist10k (Hydra).")
    return msg


def _download(root: Path) -> None:
    """torchvision's own download (with its md5 checks) into <root>/MNIST/raw."""
    import socket

    from torchvision.datasets import MNIST

    created = [d for d in (root, root / "MNIST", root / "MNIST" / "raw") if not d.exists()]
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(30)
    try:
        for train in (True, False):
            MNIST(str(root), train=train, download=True)
    except Exception:
        for d in reversed(created):  # a failed download leaves no empty folders behind
            if d.is_dir() and not any(d.iterdir()):
                d.rmdir()
        raise
    finally:
        socket.setdefaulttimeout(old)


def load_idx_pair(root: Path, stems: tuple[str, str], verify_md5: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = (_read_idx(_find(root, s), verify_md5) for s in stems)
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} images but {len(labels)} labels")
    return images, labels


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

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int = 0) -> None:
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.n // self.batch_size)

    def __iter__(self):
        # A generator: the order is drawn at the first next(), after Lightning's set_epoch.
        # (On resume Lightning creates the iterator before it calls set_epoch.)
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.n, generator=g)
        else:
            order = torch.arange(self.n)
        yield from order.split(self.batch_size)


class InMemoryData:
    """Train / val / test ``Split`` tensors that ``setup`` fills; batches are whole index tensors."""

    train: Split | None = None
    val: Split | None = None
    test: Split | None = None

    def setup(self) -> InMemoryData:
        raise NotImplementedError

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        data = getattr(self.setup(), split)
        sampler = BatchIndexSampler(len(data), batch_size, shuffle, seed)
        return DataLoader(_TensorBatches(data), batch_size=None, sampler=sampler)

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

    def check(self) -> None:
        """Fail before training if the files are missing and cannot be downloaded."""
        needed = TEST_FILES if self.protocol == "mnist10k" else TRAIN_FILES + TEST_FILES
        missing = [s for s in needed if _find(self.root, s) is None]
        if missing and self.protocol == "mnist" and self.download:
            try:
                _download(self.root)
            except Exception:  # noqa: BLE001 - any download failure ends in the same message
                pass
            missing = [s for s in needed if _find(self.root, s) is None]
        if missing:
            raise DataError(_missing_message(self.root, missing, self.protocol))

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
