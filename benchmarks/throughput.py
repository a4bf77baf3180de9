"""Training throughput of the suite's Lightning loop vs a plain PyTorch loop, and ADMM epoch time
vs dense epoch time, measured in one process.

Same model, data tensors, batch sampler and batch size on both sides; both evaluate the
validation split once per epoch, as the suite's stages do. The rounds are interleaved and
the median of the per-round ratios is reported, so machine noise hits both sides alike.

    python benchmarks/throughput.py --data mnist10k --model lenet5 --epochs 2 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from admm_pruning.data.mnist import MNISTData
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.pruners.admm import ADMMModule
from admm_pruning.report.provenance import describe, provenance
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.sparsity.masks import apply_masks, magnitude_masks
from admm_pruning.training.context import EVAL_BATCH, StageContext
from admm_pruning.training.fast import (
    FastPath,
    build_optimizer,
    has_convolutions,
    set_memory_format,
    skip_gpu_probe_without_gpu,
)
from admm_pruning.training.modules import ClassifierModule

MODELS = {"lenet5": (LeNet5, {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}),
          "lenet300": (LeNet300, {"fc1": 0.04, "fc2": 0.07, "fc3": 0.12})}
SLOW, FAST = FastPath(False, False, False, 1), FastPath()


def plain_loop(net, data: MNISTData, epochs: int, batch: int, seed: int, fast: FastPath = SLOW) -> float:
    """The baseline: hand-written PyTorch loop over the same batches. Returns seconds. With
    ``fast`` it uses the suite's kernel choices (training/fast.py), so the two sides differ only
    in the loop around them."""
    torch.manual_seed(seed)
    device = data.train.x.device
    model = net(dropout=0.0).to(device)
    if fast.channels_last and has_convolutions(model):
        set_memory_format(model, channels_last=True)
    opt = build_optimizer(partial(torch.optim.Adam, lr=1e-3), model.parameters(), fast.fused_optimizer)
    train = data.loader("train", batch, shuffle=True, seed=seed)
    val = data.loader("val", EVAL_BATCH)
    synchronize(device)
    start = time.perf_counter()
    for epoch in range(epochs):
        train.sampler.set_epoch(epoch)
        model.train()
        for x, y in train:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x).argmax(1) == y).sum()) for x, y in val)
        assert correct >= 0
    synchronize(device)
    return time.perf_counter() - start


def suite_loop(net, data: MNISTData, epochs: int, batch: int, seed: int, fast: FastPath = FAST, l2: float = 0.0,
               admm_keep: dict[str, float] | None = None, masked: dict[str, float] | None = None) -> float:
    """The suite's stage loop (Lightning, per-epoch checkpoint, validation). Returns seconds.
    ``masked``: retraining under magnitude masks at these keep fractions."""
    torch.manual_seed(seed)
    model = net(dropout=0.0)
    if masked:
        apply_masks(model, magnitude_masks(model, masked))
    opt = partial(torch.optim.Adam, lr=1e-3)
    if admm_keep is None:
        module = ClassifierModule(model, opt, l2=l2)
    else:  # one ADMM iteration per epoch, so the Z/U updates are inside the timing
        schedule = ADMMSchedule(optimizer=opt, iterations=epochs, epochs_per_iteration=1.0, rho=1e-4, l2=l2)
        module = ADMMModule(model, schedule, admm_keep, data.steps_per_epoch(batch))
    device = data.train.x.device  # the suite moves the data there itself (StageContext.place_data)
    trainer_kwargs = {"accelerator": "gpu" if device.type == "cuda" else "cpu", "devices": 1,
                      "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}
    ctx = StageContext(data=data, trainer_kwargs=trainer_kwargs, seed=seed, experiment="bench", fast=fast)
    with tempfile.TemporaryDirectory() as d:
        synchronize(device)
        start = time.perf_counter()
        ctx.fit(module, "bench", Path(d), None, batch, max_epochs=epochs)
        synchronize(device)
        return time.perf_counter() - start


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a timer reads the time the work took."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def variants(net, keep: dict[str, float]) -> dict[str, Callable[[MNISTData, int, int, int], float]]:
    """Every loop timed, by name; each takes (data, epochs, batch, seed)."""
    return {
        "plain": partial(plain_loop, net),
        "plain_fast": partial(plain_loop, net, fast=FAST),
        "suite_slow": partial(suite_loop, net, fast=SLOW),
        "suite_channels_last": partial(suite_loop, net, fast=FastPath(True, False, False, 1)),
        "suite_fused": partial(suite_loop, net, fast=FastPath(False, True, False, 1)),
        "suite_step_per_batch": partial(suite_loop, net, fast=FastPath(steps_per_batch=1)),
        "suite": partial(suite_loop, net),
        # dense vs ADMM vs masked: all with the recipe's L2 (5e-5), as in pretraining and ADMM
        "dense": partial(suite_loop, net, l2=5e-5),
        "admm": partial(suite_loop, net, l2=5e-5, admm_keep=keep),
        "masked": partial(suite_loop, net, l2=5e-5, masked=keep),
        "masked_parametrized": partial(suite_loop, net, fast=FastPath(step_masks=False), l2=5e-5, masked=keep),
    }


RATIOS = {  # name: (numerator, denominator, what it says, target)
    "suite_vs_plain": ("plain", "suite", "suite / plain throughput (plain: default kernels)", ">= 0.95"),
    "suite_vs_plain_fast": ("plain_fast", "suite", "suite / plain throughput, same kernels on both sides", ""),
    "plain_fast_vs_plain": ("plain", "plain_fast", "plain loop: fast kernels / default kernels (speedup)", ""),
    "suite_vs_suite_slow": ("suite_slow", "suite", "suite: fast kernels / default kernels (speedup)", ""),
    "channels_last_gain": ("suite_slow", "suite_channels_last", "suite: channels-last alone (speedup)", ""),
    "fused_gain": ("suite_slow", "suite_fused", "suite: fused Adam alone (speedup)", ""),
    "chunk_gain": ("suite_step_per_batch", "suite", "suite: 10 optimizer steps per Lightning batch (speedup)", ""),
    "admm_vs_dense": ("admm", "dense", "ADMM epoch time / dense epoch time", "<= 1.05"),
    "masked_vs_dense": ("masked", "dense", "masked retraining epoch time / dense epoch time", ""),
    "step_masks_gain": ("masked_parametrized", "masked", "masked retraining: masks once per step (speedup)", ""),
}


def measure(args: argparse.Namespace) -> dict[str, Any]:
    data = MNISTData(args.data, args.data_dir, val_size=1000 if args.data == "mnist10k" else 5000,
                     pixel_scale="unit").setup()
    device = args.device if args.device != "auto" else "cuda" if torch.cuda.is_available() else "cpu"
    data.to_device(device)  # on a GPU both loops index batches out of resident tensors
    skip_gpu_probe_without_gpu()  # as a fit does: a plain script would not have Lightning's NVML probe
    net, keep = MODELS[args.model]
    loops = variants(net, keep)
    run: dict[str, list[float]] = {k: [] for k in loops}
    suite_loop(net, data, 1, args.batch_size, 0)  # warm-up: imports, allocator, oneDNN kernels
    for r in range(args.rounds):
        for name, loop in loops.items():
            run[name].append(loop(data, args.epochs, args.batch_size, r))
        print(f"round {r}: " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in run.items()), flush=True)
    ratios = {k: [a / b for a, b in zip(run[n], run[d], strict=True)] for k, (n, d, _, _) in RATIOS.items()}
    samples = args.epochs * len(data.train)
    return {
        "model": args.model, "data": args.data, "batch_size": args.batch_size, "epochs": args.epochs,
        "rounds": args.rounds, "train_samples_per_epoch": len(data.train),
        "provenance": provenance(data.train.x.device),
        "samples_per_s": {k: samples / statistics.median(v) for k, v in run.items()},
        "ratio_medians": {k: statistics.median(v) for k, v in ratios.items()},
        "ratios": ratios, "seconds": run,
    }


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        f"# Training throughput: {args.model} on {args.data}, batch {args.batch_size}",
        "",
        f"Command: `python benchmarks/throughput.py --data {args.data} --model {args.model} "
        f"--epochs {args.epochs} --rounds {args.rounds}`. Medians over {args.rounds} interleaved rounds, "
        f"{args.epochs} epochs each, validation included.",
        "",
        describe(result["provenance"]),
        "",
        "| loop | samples/s |",
        "|---|---:|",
        *(f"| {k} | {v:.0f} |" for k, v in result["samples_per_s"].items()),
        "",
        "| ratio | median | per round | target |",
        "|---|---:|---|---:|",
        *(f"| {text} | {result['ratio_medians'][k]:.3f} | "
          f"{', '.join(f'{x:.3f}' for x in result['ratios'][k])} | {target} |"
          for k, (_, _, text, target) in RATIOS.items()),
        "",
        NOTES,
    ]
    return "\n".join(lines) + "\n"


NOTES = """Loops: `plain` is a hand-written PyTorch loop with PyTorch's default kernels (NCHW, for-loop Adam);
`plain_fast` the same loop with the suite's kernel choices (src/admm_pruning/training/fast.py: channels-
last convolutions and fused Adam); `suite` the suite's Lightning stage loop as runs use it (10 optimizer
steps per Lightning batch, training/chunks.py); `suite_step_per_batch` the same with Lightning's
automatic loop, one step per batch; `suite_slow` with every `fast` choice off (the code before them);
`suite_channels_last` and `suite_fused` with one kernel choice each, one step per batch. `dense`, `admm`
and `masked` are suite loops with L2 5e-5: dense training, ADMM (one Z/U update per epoch) and retraining
under masks (applied once per optimizer step); `masked_parametrized` multiplies each weight by its mask
in every forward pass instead (`fast.step_masks=false`). Every loop runs without the NVML probe that
Lightning's import adds to each Adam step on a machine without a GPU (training/fast.py), as a plain
script would."""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist10k", choices=["mnist", "mnist10k"])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default="lenet5", choices=list(MODELS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--device", default="auto", help="cpu, cuda, or auto (cuda when present)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    torch.set_flush_denormal(True)  # as every run does, before the thread pool starts
    result = measure(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    name = f"throughput_{args.model}_{args.data}" + ("_cuda" if result["provenance"]["gpu"] else "")
    (out / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = markdown(result, args)
    (out / f"{name}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
