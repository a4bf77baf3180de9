"""ImageNet (ILSVRC-2012) for the AlexNet experiments, and FakeData as its in-memory stand-in for
tests and CI; both with the interface of data.MNISTData (setup, loader, steps_per_epoch, splits).

ImageNet layout under DATA_DIR (torchvision ImageFolder; the val images sorted into class
folders, e.g. with the usual valprep.sh):

    <DATA_DIR>/imagenet/train/<wnid>/*.JPEG   1,281,167 images, 1,000 folders n01440764 ...
    <DATA_DIR>/imagenet/val/<wnid>/*.JPEG     50,000 images, the same 1,000 folders

Splits: ``test`` is the official val set (the papers' figures); ``val`` is ``val_size`` images
carved from train by a permutation seeded with ``split_seed`` (for monitoring, never for the
reported score); ``train`` is the rest.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset
from torchvision import datasets, transforms

from admm_pruning.data.mnist import InMemoryData, Split, default_data_dir
from admm_pruning.foundations.errors import DataError

# The torchvision ImageNet normalisation (torchvision's AlexNet weights expect it).
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class SeededSampler(Sampler[int]):
    """Sample indices, shuffled by (seed, epoch) as data.BatchIndexSampler shuffles batches, so a
    resumed run sees the same order; Lightning calls ``set_epoch`` each epoch."""

    def __init__(self, n: int, shuffle: bool, seed: int = 0) -> None:
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        # A generator, so the order is drawn after Lightning's set_epoch (as in BatchIndexSampler).
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            yield from torch.randperm(self.n, generator=g).tolist()
        else:
            yield from range(self.n)


def _carve(n: int, val_size: int, split_seed: int) -> tuple[list[int], list[int]]:
    """Train and val indices: the last ``val_size`` of a seeded permutation are val."""
    if not 0 <= val_size < n:
        raise DataError(f"data.val_size={val_size}: must be in [0, {n})")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(split_seed)).tolist()
    return perm[:n - val_size], perm[n - val_size:]


class ImageNetData:
    """ILSVRC-2012 through ImageFolder, decoded by ``num_workers`` loader processes.

    Train: RandomResizedCrop(crop) + horizontal flip; evaluation: Resize(resize) + CenterCrop(crop)
    (torchvision's recipe; Caffe used 227 crops of 256x256 images: crop=227 for CaffeNet).
    """

    def __init__(
        self,
        name: str = "imagenet",
        data_dir: str | None = None,
        split_seed: int = 0,
        val_size: int = 10_000,
        num_classes: int = 1000,
        num_workers: int = 8,
        crop: int = 224,
        resize: int = 256,
        eval_batch_size: int = 250,
    ) -> None:
        self.name = name
        self.root = Path(data_dir or default_data_dir()) / "imagenet"
        self.split_seed, self.val_size, self.num_classes = split_seed, val_size, num_classes
        self.num_workers, self.crop, self.resize = num_workers, crop, resize
        self.eval_batch_size = eval_batch_size
        self.train: Dataset | None = None
        self.val: Dataset | None = None
        self.test: Dataset | None = None

    def _folder(self, split: str, transform: transforms.Compose) -> datasets.ImageFolder:
        path = self.root / split
        if not path.is_dir():
            raise DataError(f"ImageNet {split} folder {path} not found: expected "
                            f"<DATA_DIR>/imagenet/{split}/<wnid>/*.JPEG (DATA_DIR={self.root.parent})")
        try:
            folder = datasets.ImageFolder(str(path), transform=transform)
        except FileNotFoundError as exc:  # no class folders, or class folders without images
            raise DataError(f"ImageNet {split} folder {path} holds no images in <wnid>/ folders: "
                            f"{str(exc).splitlines()[0]}") from exc
        if len(folder.classes) != self.num_classes:
            raise DataError(f"ImageNet {split} folder {path} has {len(folder.classes)} class folders, "
                            f"data.num_classes={self.num_classes}")
        return folder

    def preprocessing(self) -> dict:
        """What a deployed model must be fed: an RGB image resized and center-cropped, scaled to [0, 1],
        then standardized per channel (torchvision's ImageNet convention)."""
        return {"input": f"RGB image, resized to {self.resize} (shorter side), center crop {self.crop}",
                "input_shape": [3, self.crop, self.crop], "pixel_scale": "imagenet", "scale": 1 / 255,
                "formula": "(x/255 - mean) / std per channel", "mean": list(MEAN), "std": list(STD),
                "classes": list(self.setup().test.classes)}

    def setup(self) -> ImageNetData:
        if self.train is not None:
            return self
        normalize = transforms.Normalize(MEAN, STD)
        augment = transforms.Compose([transforms.RandomResizedCrop(self.crop), transforms.RandomHorizontalFlip(),
                                      transforms.ToTensor(), normalize])
        center = transforms.Compose([transforms.Resize(self.resize), transforms.CenterCrop(self.crop),
                                     transforms.ToTensor(), normalize])
        train = self._folder("train", augment)
        test = self._folder("val", center)
        if train.classes != test.classes:
            raise DataError(f"ImageNet folders {self.root / 'train'} and {self.root / 'val'} "
                            "have different class folders")
        held_out = copy.copy(train)  # same file list (scanned once), evaluation transform
        held_out.transform = center
        train_idx, val_idx = _carve(len(train), self.val_size, self.split_seed)
        self.train, self.val, self.test = Subset(train, train_idx), Subset(held_out, val_idx), test
        return self

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0) -> DataLoader:
        data = getattr(self.setup(), split)
        workers = self.num_workers
        return DataLoader(data, batch_size=batch_size, sampler=SeededSampler(len(data), shuffle, seed),
                          num_workers=workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=workers > 0)

    def steps_per_epoch(self, batch_size: int) -> int:
        return -(-len(self.setup().train) // batch_size)


class FakeImageData(InMemoryData):
    """torchvision FakeData (random images, random labels: nothing to learn) decoded once and held
    in memory as tensors, batched like MNISTData: the ImageNet pipeline in seconds, for tests/CI.

    ``size`` images are split by a permutation seeded with ``split_seed``: the last ``test_size``
    are test, the ``val_size`` before them val, the rest train.
    """

    def __init__(
        self,
        name: str = "fakedata",
        size: int = 320,
        test_size: int = 64,
        val_size: int = 32,
        image_size: tuple[int, int, int] = (3, 64, 64),
        num_classes: int = 10,
        split_seed: int = 0,
    ) -> None:
        self.name = name
        self.size, self.test_size, self.val_size = size, test_size, val_size
        self.image_size, self.num_classes, self.split_seed = tuple(image_size), num_classes, split_seed

    def preprocessing(self) -> dict:
        """Bytes standardised by the generated images' own mean and sd."""
        mean, std = self.setup().stats
        return {"input": "torchvision FakeData bytes 0..255", "input_shape": list(self.image_size),
                "pixel_scale": "fakedata", "formula": "(x - mean) / std", "scale": 1.0, "mean": [mean], "std": [std],
                "classes": [str(c) for c in range(self.num_classes)]}

    def setup(self) -> FakeImageData:
        if self.train is not None:
            return self
        n_train = self.size - self.test_size - self.val_size
        if self.test_size < 1 or self.val_size < 0 or n_train < 1:
            raise DataError(f"data.size={self.size}, data.val_size={self.val_size}, data.test_size="
                            f"{self.test_size}: need test_size >= 1, val_size >= 0 and train images left")
        fake = datasets.FakeData(self.size, self.image_size, self.num_classes, transforms.PILToTensor())
        images, labels = zip(*(fake[i] for i in range(self.size)), strict=True)
        x = torch.stack(images).float()
        self.stats = (float(x.mean()), float(x.std()))
        x, y = (x - self.stats[0]) / self.stats[1], torch.tensor(labels)  # standardised: the images are noise
        perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.split_seed))
        train, val, test = perm.split([n_train, self.val_size, self.test_size])
        self.train, self.val, self.test = Split(x[train], y[train]), Split(x[val], y[val]), Split(x[test], y[test])
        return self
