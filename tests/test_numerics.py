"""CPU numerics of a run: denormal floats are flushed to zero unless the config says otherwise."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from admm_pruning.config import validate
from admm_pruning.foundations.errors import ConfigError
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


# The flag lives in each thread's MXCSR register: OpenMP workers inherit it only when they are
# created after it is set, so a run sets it before its first parallel op (measured on 2 threads:
# set after the pool started, half of a denormal tensor stayed unflushed and ran 2.4x slower).
WORKERS = """
import sys, numpy as np, torch
torch.set_num_threads(2)
from omegaconf import OmegaConf
import admm_pruning.pipeline as pipeline   # everything the CLI imports before it flushes
from admm_pruning.foundations.errors import DataError
x = torch.from_numpy(np.full(1_000_000, 1e-39, dtype=np.float32))  # made before the flag, which would flush it
if sys.argv[1] == "late":
    (torch.ones(1_000_000) * 2).sum()   # an op that starts the OpenMP pool first
pipeline.flush_denormals(OmegaConf.create({"flush_denormal": True}))
print(int(((x * 0.5 + x) != 0).sum()))
"""


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="two OpenMP threads need two cores")
def test_the_run_flushes_denormals_in_every_worker_thread():
    def unflushed(order: str) -> int:
        out = subprocess.run([sys.executable, "-c", WORKERS, order], capture_output=True, text=True, timeout=300,
                             env={**os.environ, "OMP_NUM_THREADS": "2"})
        assert out.returncode == 0, out.stderr[-2000:]
        return int(out.stdout.split()[-1])

    assert unflushed("early") == 0  # the order a run uses: nothing parallel before the flag
    assert unflushed("late") > 0  # the failure this guards against: a worker without the flag
