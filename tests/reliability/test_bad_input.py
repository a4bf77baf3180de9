"""Promise 7: bad input fails fast through the CLI with one clear line naming the key or file,
a non-zero exit, and nothing written under results/ (or any stage folder)."""

from __future__ import annotations

import gzip
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from conftest import ROOT

from .helpers import cli_env

pytestmark = pytest.mark.reliability

HYDRA = 1  # Hydra's own composition errors
OURS = 2  # ConfigError / DataError from train.py
# (id, overrides, exit status, text the error must contain); DATA stands for the fake data folder.
CASES = [
    ("unknown-model", ["model=lenet9"], HYDRA, "Could not find 'model/lenet9'"),
    ("unknown-data", ["data=cifar99"], HYDRA, "Could not find 'data/cifar99'"),
    ("unknown-pruner", ["pruner=magic"], HYDRA, "Could not find 'pruner/magic'"),
    ("unknown-experiment", ["experiment=lenet5_admm_999x"], HYDRA, "Could not find 'experiment/lenet5_admm_999x'"),
    ("layer-typo", ["+prune.keep.fc4=0.1"], OURS, "prune.keep.fc4: unknown layer 'fc4' for model lenet300"),
    ("keep-zero", ["prune.keep.fc1=0"], OURS, "prune.keep.fc1=0: keep fractions must lie in (0, 1]"),
    ("keep-above-one", ["prune.keep.fc2=1.5"], OURS, "prune.keep.fc2=1.5: keep fractions must lie in (0, 1]"),
    ("compression-unreachable", ["prune.compression=1e9"], OURS, "prune.compression=1e+09: this model reaches only"),
    ("compression-below-one", ["prune.compression=0.5"], OURS, "prune.compression=0.5: this model reaches only"),
    ("negative-epochs", ["pretrain.epochs=-3"], OURS, "pretrain.epochs=-3: epoch counts must be >= 0"),
    ("negative-lr", ["pruner.optimizer.lr=-0.1"], OURS, "pruner.optimizer.lr=-0.1: learning rates must be > 0"),
    ("nan-rho", ["pruner.rho=nan"], OURS, "pruner.rho=nan: not a finite number"),
    ("seed-not-an-integer", ["seed=abc"], OURS, "seed='abc': expected an integer"),
    ("bad-checksum", ["data=mnist10k", "data.data_dir=BAD"], OURS, "BAD/mnist/t10k-images-idx3-ubyte.gz: md5"),
    # found by trying (issue 24): each got through to a traceback, a wrong run or a late failure
    ("seed-negative", ["seed=-1"], OURS, "seed=-1: expected an integer from 0 to 4294967295"),
    ("seed-too-large", ["seed=4294967296"], OURS, "seed=4294967296: expected an integer from 0 to 4294967295"),
    ("accumulate-zero", ["+trainer.accumulate_grad_batches=0"], OURS,
     "trainer.accumulate_grad_batches=0: expected an integer >= 1"),
    ("precision-banana", ["trainer.precision=banana"], OURS, "trainer.precision=banana: expected one of"),
    ("precision-64", ["trainer.precision=64"], OURS, "trainer.precision=64: expected one of"),
    ("fp16-on-cpu", ["trainer.precision=16-mixed", "trainer.accelerator=cpu"], OURS,
     "trainer.precision=16-mixed: fp16 mixed precision needs a GPU"),
    ("fractional-epochs", ["pretrain.epochs=2.5"], OURS, "pretrain.epochs=2.5: epoch counts must be whole numbers"),
    ("pretrain-dropout", ["pretrain.dropout=1.5"], OURS, "pretrain.dropout=1.5: a dropout rate must lie in [0, 1)"),
    ("retrain-dropout", ["retrain.dropout=1.5"], OURS, "retrain.dropout=1.5: a dropout rate must lie in [0, 1)"),
    ("unwritable-results", ["paths.results_dir=/proc/admm-results"], OURS,
     "paths.results_dir='/proc/admm-results': cannot write /proc/admm-results/lenet300_admm_23x"),
    ("checkpoint-of-random-bytes", ["+pretrain.checkpoint=BAD/junk.ckpt"], OURS,
     "pretrain.checkpoint=BAD/junk.ckpt: not a PyTorch checkpoint of tensors"),
    ("negative-rho-multiplier", ["pruner.rho_multiplier=-1"], OURS, "pruner.rho_multiplier=-1: must be > 0"),
    ("negative-eps", ["pruner.eps=-1"], OURS, "pruner.eps=-1: must be >= 0"),
    ("untrained-dense", ["pretrain.epochs=0"], OURS, "pretrain.epochs=0: the dense baseline would be untrained"),
    ("empty-checkpoint", ["+pretrain.checkpoint=''"], OURS, "pretrain.checkpoint='': give a file"),
    ("empty-experiment-name", ["experiment_name=''"], OURS, "experiment_name='': must be a non-empty folder name"),
    ("path-experiment-name", ["experiment_name=../x"], OURS, "experiment_name='../x': must be a non-empty folder"),
    *([] if torch.cuda.is_available() else [
        ("gpu-without-a-gpu", ["trainer.accelerator=gpu"], OURS, "trainer.accelerator=gpu: no GPU is visible")]),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, tuple]:
    """Every case launched at once (Hydra and torch take seconds to start): id -> (process, root, bad)."""
    bad = tmp_path_factory.mktemp("bad-mnist")
    (bad / "mnist").mkdir()
    for stem in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (bad / "mnist" / f"{stem}.gz").write_bytes(gzip.compress(b"not mnist at all"))
    (bad / "junk.ckpt").write_bytes(bytes(range(256)) * 64)

    def launch(case: tuple) -> tuple:
        name, extra, _, _ = case
        root = tmp_path_factory.mktemp(name)
        own_data = any(a.startswith(("data=", "data.data_dir=")) for a in extra)
        data = [] if own_data else [f"data.data_dir={data_dir}", "data.verify_md5=false",
                                    "data.val_size=200", "data.download=false"]
        own_results = [] if any(a.startswith("paths.results_dir=") for a in extra) else \
            [f"paths.results_dir={root / 'results'}"]
        args = ["experiment=lenet300_admm_23x", *data, "logger=csv", f"paths.artifacts_dir={root / 'artifacts'}",
                *own_results, *(a.replace("BAD", str(bad)) for a in extra)]
        proc = subprocess.run([sys.executable, "-m", "admm_pruning.train", *args], cwd=ROOT, env=cli_env(),
                              capture_output=True, text=True, timeout=300)
        return proc, root, bad

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(zip([c[0] for c in CASES], pool.map(launch, CASES), strict=True))


@pytest.mark.parametrize("name, extra, status, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_fails_fast_with_one_clear_line_and_writes_nothing(outcomes, name, extra, status, message):
    proc, root, bad = outcomes[name]
    message = message.replace("BAD", str(bad))
    assert proc.returncode == status, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    if status == OURS:  # one line, no traceback
        (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error: ")]
        assert message in line and "Traceback" not in proc.stderr
    assert not (root / "results").exists()
    assert not (root / "artifacts" / "stages").exists()
    assert "weights_only" not in proc.stderr  # never advise unsafe loading


def test_a_rejected_run_leaves_no_wandb_run(tmp_path: Path):
    """With the W&B logger on (offline), input refused before training starts no W&B run."""
    proc = subprocess.run([sys.executable, "-m", "admm_pruning.train", "experiment=lenet300_admm_23x", "seed=-1",
                           "logger=wandb", f"paths.artifacts_dir={tmp_path / 'a'}",
                           f"paths.results_dir={tmp_path / 'r'}"], cwd=ROOT, env=cli_env(WANDB_MODE="offline"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == OURS and "seed=-1" in proc.stderr
    assert not (tmp_path / "a" / "wandb").exists() and not (tmp_path / "r").exists()
