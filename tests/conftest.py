"""Shared fixtures: config composition, generated IDX data, the shared MNIST test set."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = str(ROOT / "conf")

# Fast settings shared by the small end-to-end runs (TINY adds a tiny ADMM schedule).
TINY_BASE = ["logger=csv", "trainer.accelerator=cpu", "pretrain.epochs=1"]
TINY = [
    *TINY_BASE,
    "retrain.epochs=1",
    "pruner.iterations=2",
    "pruner.epochs_per_iteration=0.5",
]


def compose_cfg(overrides: list[str]) -> DictConfig:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    header = (0x0800 | arr.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def make_idx_dataset(root: Path, n_train: int, n_test: int, seed: int = 0) -> Path:
    """Learnable fake MNIST as raw (uncompressed) IDX files in <root>/mnist: each class lights
    its own 4x4 block, plus noise."""
    rng = np.random.default_rng(seed)
    d = root / "mnist"
    d.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(labels):
            r, col = 2 + 6 * (c // 4), 2 + 6 * (c % 4)
            images[i, r:r + 4, col:col + 4] = 255
        if n:
            _write_idx(d / f"{prefix}-images-idx3-ubyte", images)
            _write_idx(d / f"{prefix}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("fake"), n_train=1200, n_test=400)


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    """The real MNIST test set (shared/data) that the mnist10k protocol uses."""
    for cand in (os.environ.get("DATA_DIR"), ROOT.parent / "shared" / "data"):
        if cand and (Path(cand) / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
            return Path(cand)
    pytest.skip("the MNIST test set is not available (set DATA_DIR or place ../shared/data)")


@pytest.fixture
def out_dirs(tmp_path: Path) -> list[str]:
    return [f"paths.artifacts_dir={tmp_path / 'artifacts'}", f"paths.results_dir={tmp_path / 'results'}"]
