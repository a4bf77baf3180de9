"""ADMM under DDP: 2 CPU processes with gloo, launched as a script (Lightning's ``ddp`` re-runs
the script for rank 1, so it cannot run inside pytest's process).

Rank 1 perturbs its U before every Z/U update, standing in for a rank-dependent projection
(e.g. a nondeterministic GPU kernel), and DDP's own per-forward buffer broadcast is off (as in
conf/trainer/ddp.yaml): the ranks agree only because ADMMModule broadcasts rank 0's Z, U and
rho after each update.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import torch

from admm_pruning.data.imagenet import FakeImageData
from admm_pruning.models.layers import set_dropout
from admm_pruning.models.lenet import LeNet5
from admm_pruning.pruners.admm import ADMMModule
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.sparsity.masks import magnitude_masks
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.training.context import StageContext
from admm_pruning.training.distributed import is_launch_rank_zero, launch_job_id

KEEP = {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}
ITERATIONS, STEPS = 3, 2
DATA = {"size": 288, "test_size": 31, "val_size": 0, "image_size": (1, 28, 28), "num_classes": 10}


class PerturbedRankOne(ADMMModule):
    """Rank 1's U drifts just before each Z/U update."""

    def on_before_optimizer_step(self, optimizer: Any) -> None:
        if self.trainer.global_rank == 1 and (self.trainer.global_step + 1) % self.steps_per_iteration == 0:
            for name in self.admm.layers:  # the step about to run ends with a Z/U update
                self.admm.u(name).add_(1e-3)
        super().on_before_optimizer_step(optimizer)


def run_rank(out: Path) -> None:
    """One DDP process: a few ADMM iterations of LeNet-5 on FakeData, the hard prune, the scores."""
    launch = {"rank_zero": is_launch_rank_zero(), "job": launch_job_id()}  # before any process group
    torch.manual_seed(0)
    model = LeNet5()
    set_dropout(model, 0.0)
    schedule = ADMMSchedule(optimizer=partial(torch.optim.SGD, lr=0.05, momentum=0.9), iterations=ITERATIONS,
                            epochs_per_iteration=1.0, rho=0.05, l2=5e-4)
    module = PerturbedRankOne(model, schedule, KEEP, STEPS)
    trainer_kwargs = {
        "accelerator": "cpu", "devices": 2, "enable_progress_bar": False, "enable_model_summary": False,
        "num_sanity_val_steps": 0, "log_every_n_steps": 1,
        "strategy": {"_target_": "pytorch_lightning.strategies.DDPStrategy", "process_group_backend": "gloo",
                     "forward_sync_buffers": False},
    }
    data = FakeImageData(**DATA).setup()
    data.eval_batch_size = 12  # 3 test batches: a padding sampler would score one of them twice
    ctx = StageContext(data, trainer_kwargs, seed=0, experiment="ddp")
    ctx.fit(module, "admm", out / "stage", None, batch_size=32, max_epochs=10)
    torch.save({
        "admm": {k: v.clone() for k, v in module.admm.state_dict().items()},
        "weights": {k: v.clone() for k, v in model.state_dict().items()},
        "masks": magnitude_masks(model, KEEP),
        "global_step": module.global_step,
        "batches_per_epoch": module.trainer.num_training_batches,
        "history": module.history,
        "scores": ctx.scores(model),
        "launch": launch,
    }, out / f"rank{torch.distributed.get_rank()}.pt")


def test_admm_state_and_masks_agree_across_ddp_ranks(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    # Own session: on a hang, rank 1 (started by rank 0) is killed with it.
    proc = subprocess.Popen([sys.executable, __file__, str(tmp_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        _, err = proc.communicate()
        pytest.fail(f"the DDP run did not finish in 180 s:\n{err[-3000:]}")
    assert proc.returncode == 0, err[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in (0, 1))
    assert r0["admm"].keys() == r1["admm"].keys() and len(r0["admm"]) == 2 * len(KEEP) + 2
    for key, value in r0["admm"].items():
        assert torch.equal(value, r1["admm"][key]), key  # Z, U, rho, iteration
    assert int(r0["admm"]["iteration"]) == ITERATIONS and r0["global_step"] == r1["global_step"] == ITERATIONS * STEPS
    assert [h["iteration"] for h in r0["history"]] == [1, 2, 3]
    # the batch of 32 is global: 16 per process, so an epoch has as many steps as on one device
    assert r0["batches_per_epoch"] == FakeImageData(**DATA).setup().steps_per_epoch(32) == 9
    for key, value in r0["weights"].items():
        assert torch.equal(value, r1["weights"][key]), key
    for name, frac in KEEP.items():
        n = r0["weights"][f"{name}.weight"].numel()
        assert torch.equal(r0["masks"][name], r1["masks"][name])
        assert int(r0["masks"][name].sum()) == keep_count(n, frac)
    # Z holds exactly keep_count nonzeros per layer after every projection
    for name, frac in KEEP.items():
        z = r0["admm"][f"z_{name}"]
        assert int(torch.count_nonzero(z)) == keep_count(z.numel(), frac)

    # what a rank knows before the process group exists (for the stage cache)
    assert r0["launch"]["rank_zero"] and not r1["launch"]["rank_zero"]
    assert r0["launch"]["job"] == r1["launch"]["job"]

    # sharded evaluation: the 31 test images scored exactly once, as in one process
    assert r0["scores"] == r1["scores"]
    data = FakeImageData(**DATA).setup()
    model = LeNet5().eval()
    model.load_state_dict(r0["weights"])
    with torch.no_grad():
        logits = model(data.test.x)
    top1 = (logits.argmax(1) == data.test.y).float().mean().item()
    top5 = (logits.topk(5, 1).indices == data.test.y[:, None]).any(1).float().mean().item()
    assert r0["scores"] == pytest.approx({"acc": top1, "acc_top5": top5}, abs=1e-6)


@pytest.mark.parametrize("env, rank_zero", [
    ({}, True), ({"LOCAL_RANK": "1"}, False), ({"NODE_RANK": "1"}, False),
    ({"SLURM_PROCID": "0", "LOCAL_RANK": "0"}, True),
    ({"SLURM_PROCID": "3", "LOCAL_RANK": "0"}, False), ({"RANK": "0", "SLURM_PROCID": "5"}, True),
])
def test_launch_rank_from_the_launchers_environment(monkeypatch, env, rank_zero):
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert is_launch_rank_zero() is rank_zero
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    assert launch_job_id() == "SLURM_JOB_ID=4242"


if __name__ == "__main__":
    run_rank(Path(sys.argv[1]))
