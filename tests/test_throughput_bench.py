"""benchmarks/throughput.py: every loop it times runs (a broken benchmark would otherwise go
unnoticed until someone measures)."""

import importlib.util
import sys

import pytest

from admm_pruning.data.mnist import MNISTData
from conftest import ROOT

_spec = importlib.util.spec_from_file_location("throughput", ROOT / "benchmarks" / "throughput.py")
throughput = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = throughput
_spec.loader.exec_module(throughput)


@pytest.fixture(scope="module")
def data(fake_data_dir) -> MNISTData:
    return MNISTData("mnist", str(fake_data_dir), val_size=1000, pixel_scale="unit", verify_md5=False).setup()


@pytest.mark.parametrize("model", ["lenet5", "lenet300"])
def test_every_timed_loop_runs_one_epoch(data, model):
    net, keep = throughput.MODELS[model]
    loops = throughput.variants(net, keep)
    assert {n for pair in throughput.RATIOS.values() for n in pair[:2]} <= set(loops)
    for name, loop in loops.items():
        seconds = loop(data, 1, 100, 0)
        assert 0 < seconds < 60, name

