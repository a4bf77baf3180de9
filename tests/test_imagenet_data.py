"""ImageNet through ImageFolder on a generated miniature layout, and FakeData in memory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from admm_pruning.data.imagenet import FakeImageData, ImageNetData
from admm_pruning.foundations.errors import DataError
from conftest import ROOT

WNIDS = ["n01440764", "n01443537", "n01484850"]


def make_imagenet(root: Path, per_class: dict[str, int], wnids: list[str] = WNIDS) -> Path:
    """<root>/imagenet/<split>/<wnid>/*.JPEG with small solid-colour images (class = colour)."""
    for split, n in per_class.items():
        for c, wnid in enumerate(wnids):
            d = root / "imagenet" / split / wnid
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (48 + i, 40), (80 * c, 20 * i, 100)).save(d / f"{wnid}_{i}.JPEG")
    return root


def small(root: Path, **kw) -> ImageNetData:
    args = {"data_dir": str(root), "val_size": 3, "num_classes": 3, "num_workers": 0, "crop": 32, "resize": 36}
    return ImageNetData(**{**args, **kw})


def test_imagefolder_splits_transforms_and_loader(tmp_path):
    d = small(make_imagenet(tmp_path, {"train": 6, "val": 2})).setup()
    assert (len(d.train), len(d.val), len(d.test)) == (15, 3, 6)
    assert d.steps_per_epoch(4) == 4
    assert set(d.train.indices).isdisjoint(d.val.indices)
    assert d.test.classes == WNIDS
    x, y = next(iter(d.loader("train", 4, shuffle=True, seed=1)))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.max() < 3
    # evaluation images: Resize + CenterCrop, normalised, the same on every pass
    first = torch.cat([x for x, _ in d.loader("test", 4)])
    assert first.shape == (6, 3, 32, 32) and torch.equal(first, torch.cat([x for x, _ in d.loader("test", 4)]))
    assert torch.equal(d.val[0][0], d.val[0][0])
    assert first.mean().abs() < 3 and not torch.equal(first[0], first[-1])
    # the training order is seeded by (seed, epoch); every image once per epoch
    loader = d.loader("train", 4, shuffle=True, seed=1)
    order = list(loader.sampler)
    assert sorted(order) == list(range(15)) and order == list(loader.sampler)
    loader.sampler.set_epoch(1)
    assert sorted(loader.sampler) == list(range(15)) and list(loader.sampler) != order
    other = small(tmp_path, split_seed=1).setup()
    assert other.val.indices != d.val.indices


def test_missing_or_empty_imagenet_fails_before_training_naming_the_path(tmp_path):
    with pytest.raises(DataError, match=f"ImageNet train folder {tmp_path / 'imagenet' / 'train'} not found"):
        small(tmp_path).setup()
    for wnid in WNIDS:
        (tmp_path / "imagenet" / "train" / wnid).mkdir(parents=True)
    with pytest.raises(DataError, match=f"{tmp_path / 'imagenet' / 'train'} holds no images"):
        small(tmp_path).setup()
    make_imagenet(tmp_path, {"train": 2})
    with pytest.raises(DataError, match=f"ImageNet val folder {tmp_path / 'imagenet' / 'val'} not found"):
        small(tmp_path).setup()
    make_imagenet(tmp_path, {"val": 1}, wnids=WNIDS[:2] + ["n99999999"])
    with pytest.raises(DataError, match="have different class folders"):
        small(tmp_path).setup()
    with pytest.raises(DataError, match="has 3 class folders, data.num_classes=1000"):
        small(tmp_path, num_classes=1000).setup()


def test_cli_without_imagenet_exits_with_the_path_and_writes_nothing(tmp_path):
    env = {**os.environ, "DATA_DIR": str(tmp_path / "nodata"), "ADMM_ARTIFACTS": str(tmp_path / "a"),
           "ADMM_RESULTS": str(tmp_path / "r"), "WANDB_MODE": "disabled"}
    proc = subprocess.run([sys.executable, "-m", "admm_pruning.train", "experiment=alexnet_admm_21x", "logger=csv"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert f"ImageNet train folder {tmp_path / 'nodata' / 'imagenet' / 'train'} not found" in proc.stderr
    assert not (tmp_path / "r").exists() and not (tmp_path / "a" / "stages").exists()


def test_fakedata_in_memory_splits():
    d = FakeImageData(size=100, test_size=20, val_size=10, image_size=(3, 16, 16), num_classes=7).setup()
    assert (len(d.train), len(d.val), len(d.test)) == (70, 10, 20)
    assert d.train.x.shape == (70, 3, 16, 16) and d.train.x.dtype == torch.float32
    assert int(d.train.y.max()) < 7 and d.steps_per_epoch(32) == 3
    again = FakeImageData(size=100, test_size=20, val_size=10, image_size=(3, 16, 16), num_classes=7).setup()
    assert torch.equal(again.test.x, d.test.x)  # FakeData images are seeded by index
    other = FakeImageData(size=100, test_size=20, val_size=10, image_size=(3, 16, 16), num_classes=7,
                          split_seed=1).setup()
    assert not torch.equal(other.test.y, d.test.y)
    x, y = next(iter(d.loader("train", 32, shuffle=True, seed=0)))
    assert x.shape == (32, 3, 16, 16) and y.shape == (32,)
    with pytest.raises(DataError, match="data.size=10"):
        FakeImageData(size=10, test_size=5, val_size=5).setup()
