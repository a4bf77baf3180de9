"""What DDP needs beyond Lightning: identical ADMM state on every rank, exact sharded evaluation,
and the rank of a process before torch.distributed is initialised (for the stage cache).

Every rank runs the whole pipeline (Lightning's ``ddp`` re-launches the script; SLURM and
torchrun start one process per device), so these helpers work in and out of a process group.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator, Sized
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Sampler


def world() -> tuple[int, int]:
    """(rank, world size) of the initialised process group; (0, 1) outside one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_launch_rank_zero() -> bool:
    """Whether this process will be global rank 0, read from the launcher's environment before
    the process group exists (the stage cache must know it before the first Trainer starts).

    torchrun sets RANK, SLURM sets SLURM_PROCID; Lightning's ``ddp`` launcher starts the other
    processes of a node with LOCAL_RANK >= 1, and other nodes are started with NODE_RANK >= 1.
    """
    for key in ("RANK", "SLURM_PROCID"):
        if key in os.environ:
            return int(os.environ[key]) == 0
    return int(os.environ.get("NODE_RANK", "0")) == 0 and int(os.environ.get("LOCAL_RANK", "0")) == 0


def launch_job_id() -> str:
    """The same string on every rank of one job, a different one for every other job (parallel
    sweep jobs share stage folders): lets a rank >= 1 tell its own rank 0's stage lock from
    another job's. SLURM job id, torchrun run id, else the pid of the process that Lightning's
    ``ddp`` launcher started the others from (rank 0: the parent of ranks >= 1).
    """
    for key in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        if key in os.environ:
            return f"{key}={os.environ[key]}"
    launcher = os.getppid() if int(os.environ.get("LOCAL_RANK", "0")) else os.getpid()
    return f"{socket.gethostname()}:{launcher}"


@torch.no_grad()
def broadcast_(tensors: Iterable[torch.Tensor], src: int = 0) -> None:
    """Overwrite every rank's tensors in place with rank ``src``'s; a no-op outside DDP."""
    if world()[1] == 1:
        return
    for t in tensors:
        dist.broadcast(t, src)


class RankShard(Sampler):
    """Rank r of W takes items r, r + W, ... of ``sampler``, or with ``split_batches`` (a sampler
    that yields whole index batches, as data.BatchIndexSampler) entries r, r + W, ... of every
    batch: every image exactly once over all ranks (Lightning's DistributedSampler pads with
    repeats, which biases an accuracy). The rank is read when iterating, inside the Trainer's
    process group; outside one this is ``sampler`` itself.
    """

    def __init__(self, sampler: Sampler, split_batches: bool = False) -> None:
        self.sampler = sampler
        self.split_batches = split_batches

    def set_epoch(self, epoch: int) -> None:
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        assert isinstance(self.sampler, Sized)
        if self.split_batches:
            return len(self.sampler)
        rank, size = world()
        return len(range(rank, len(self.sampler), size))

    def __iter__(self) -> Iterator[Any]:
        rank, size = world()
        for i, item in enumerate(self.sampler):
            if self.split_batches:
                yield item[rank::size]
            elif i % size == rank:
                yield item


def rank_sharded(loader: DataLoader) -> DataLoader:
    """The same loader, sharded over the ranks by ``RankShard``. For evaluation only: the ranks
    may get one batch more or less (no gradient synchronisation waits on them), but each needs
    at least one image, or the metric synchronisation at the end waits for it forever."""
    sampler = RankShard(loader.sampler, split_batches=loader.batch_size is None)
    return DataLoader(loader.dataset, batch_size=loader.batch_size, sampler=sampler,
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn,
                      pin_memory=loader.pin_memory)
