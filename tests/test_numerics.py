"""CPU numerics of a run: denormal floats are flushed to zero unless the config says otherwise."""

from __future__ import annotations

import pytest
import torch

from admm_pruning.config import ConfigError, validate
from admm_pruning.models.lenet import LeNet5
from admm_pruning.pipeline import flush_denormals
from conftest import compose_cfg

TINY = 1e-39  # a denormal float32: below the smallest normal, 1.18e-38


@pytest.fixture(autouse=True)
def _restore():
    yield
    torch.set_flush_denormal(False)


@pytest.mark.parametrize("setting, flushed", [("true", True), ("false", False)])
def test_denormals_are_flushed_to_zero_by_default(setting, flushed):
    cfg = compose_cfg(["experiment=lenet5_admm_71x", f"flush_denormal={setting}"])
    flush_denormals(cfg)
    product = (torch.tensor([TINY]) * torch.tensor([1.0])).item()
    assert (product == 0.0) is flushed


def test_the_default_is_to_flush():
    assert compose_cfg(["experiment=lenet5_admm_71x"]).flush_denormal is True


def test_a_non_boolean_setting_is_refused_by_name():
    cfg = compose_cfg(["experiment=lenet5_admm_71x", "flush_denormal=sometimes"])
    with pytest.raises(ConfigError, match="flush_denormal='sometimes': expected true or false"):
        validate(cfg, LeNet5)
