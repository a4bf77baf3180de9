"""Kernel choices that make a training step cheaper and leave its math unchanged.

- **Channels-last convolutions.** oneDNN (CPU) and cuDNN run convolutions and pooling in NHWC
  without the layout reorders NCHW costs: on the 2-core VM a LeNet-5 step took about 30% less
  time (benchmarks/throughput.py records it). Gradients agree with NCHW to about 1e-6
  (relative); only the summation order of the kernels differs.
- **Fused optimizer kernels.** Adam, AdamW and SGD update every parameter in one kernel instead
  of a chain of elementwise ops per parameter; the updates agree with the for-loop's to 1e-7.
- **Masks once per step** (``sparsity.masks.StepMasks``): a masked model trains with its masks
  baked into the weights and applied to the gradients before each optimizer step, instead of a
  multiply in every forward and backward pass. Same arithmetic, bit for bit.
- **No NVML probe per step on a machine without a GPU** (``skip_gpu_probe_without_gpu``).
- **Several optimizer steps per Lightning batch** (``steps_per_batch``, training/chunks.py): the
  same steps, with Lightning's per-batch Python run once per k of them.

Results move in their last bits, as they do on another machine. ``fast.channels_last=false
fast.fused_optimizer=false fast.step_masks=false fast.steps_per_batch=1`` gives the earlier code's
kernels and loop. No setting here is part of a stage key.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from admm_pruning.foundations.errors import ConfigError

FUSED_OPTIMIZERS = (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD)
NVML_CHECK = "PYTORCH_NVML_BASED_CUDA_CHECK"


@dataclass(frozen=True)
class FastPath:
    """The ``fast`` node of conf/train.yaml. ``steps_per_batch``: optimizer steps per Lightning
    batch (training/chunks.py); 1 is Lightning's automatic loop."""

    channels_last: bool = True
    fused_optimizer: bool = True
    step_masks: bool = True
    steps_per_batch: int = 10

    def __post_init__(self) -> None:
        if isinstance(self.steps_per_batch, bool) or not isinstance(self.steps_per_batch, int) \
                or self.steps_per_batch < 1:
            raise ConfigError(f"fast.steps_per_batch={self.steps_per_batch!r}: must be an integer >= 1")


def build_optimizer(factory: Any, params: Any, fused: bool) -> torch.optim.Optimizer:
    """``factory(params)``, with ``fused=True`` added for Adam, AdamW and SGD when ``fused`` is set
    and the config chose no implementation itself (``foreach`` or ``fused``)."""
    if (fused and isinstance(factory, functools.partial) and factory.func in FUSED_OPTIMIZERS
            and not {"fused", "foreach"} & factory.keywords.keys()):
        return factory(params, fused=True)
    return factory(params)


def has_convolutions(module: nn.Module) -> bool:
    return any(p.dim() == 4 for p in module.parameters())


def set_memory_format(module: nn.Module, channels_last: bool) -> None:
    """Every 4-d parameter and buffer of ``module`` (weights, masks, ADMM's Z and U) in NHWC or back
    in NCHW, in place: the parameters stay the same objects, so an optimizer keeps holding them."""
    module.to(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def match_state_layout(optimizer: torch.optim.Optimizer) -> None:
    """Give every per-parameter state tensor (Adam's moments, SGD's momentum) its parameter's
    strides. Fused kernels assume equal layouts and silently compute garbage otherwise, which
    happens when a checkpoint written in one layout is resumed in the other."""
    for group in optimizer.param_groups:
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            for key, value in state.items():
                if torch.is_tensor(value) and value.shape == p.shape and value.stride() != p.stride():
                    state[key] = torch.empty_like(p, dtype=value.dtype).copy_(value)


def skip_gpu_probe_without_gpu() -> bool:
    """Drop ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (set by lightning_fabric on import) when no CUDA
    device exists; returns whether it did.

    Adam and AdamW ask ``torch.accelerator.is_available()`` on every step. With the variable set,
    a CUDA build of torch on a machine without a GPU answers by loading NVML afresh each time
    (a fused Adam step of LeNet-5 took 0.13-0.16 ms longer on the 2-core VM); without it, by a
    cached runtime call (about 2 us). The variable guards forked workers against an initialised CUDA driver,
    which cannot happen where there is no device, so it stays wherever one is.
    """
    if os.environ.get(NVML_CHECK) != "1" or torch.cuda.device_count() > 0:
        return False
    del os.environ[NVML_CHECK]
    return True
