"""Shared generated data set and one finished baseline run that tests copy and damage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import make_idx_dataset

from .helpers import ONESHOT, run


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_idx_dataset(tmp_path_factory.mktemp("reliability-data"), n_train=1200, n_test=400)


@pytest.fixture(scope="session")
def baseline(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> tuple[Path, dict[str, Any]]:
    """A finished oneshot run (root folder, summary): copy it with helpers.copy_run before changing it."""
    root = tmp_path_factory.mktemp("baseline")
    return root, run(data_dir, root, *ONESHOT)
