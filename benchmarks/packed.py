"""Does training several small runs together in one process pay? K models of one network (each
its own seed, batch order and masks) trained as one with torch.func (stack_module_state + vmap),
against what a sweep does today: two joblib workers of one thread, each training one run at a time.

Both sides run plain PyTorch loops over the same in-memory tensors (the suite's loop costs the
same on both, so it is left out). Throughput is training samples per second over all runs; the
joblib side is estimated as 2 x the one-thread throughput of a single run, measured here in the
same process (two independent workers on two cores scale at best linearly). Rounds are
interleaved and medians reported.

    python benchmarks/packed.py --data mnist10k --model lenet300 --packs 2 4 8 16
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from admm_pruning.data.mnist import MNISTData
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.report.provenance import describe, provenance
from admm_pruning.sparsity.masks import magnitude_masks

MODELS = {"lenet5": (LeNet5, {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}),
          "lenet300": (LeNet300, {"fc1": 0.04, "fc2": 0.07, "fc3": 0.12})}


def _batches(n: int, batch: int, steps: int, seed: int) -> torch.Tensor:
    """(steps, batch) indices: epochs of seeded permutations, as the suite's sampler draws them."""
    g = torch.Generator().manual_seed(seed)
    order = torch.cat([torch.randperm(n, generator=g) for _ in range(-(-steps * batch // n))])
    return order[: steps * batch].view(steps, batch)


def single(net, keep, data: MNISTData, steps: int, batch: int, seed: int) -> float:
    """One masked run, plain loop, masks applied to the gradients once per step. Seconds."""
    torch.manual_seed(seed)
    model = net(dropout=0.0)
    masks = magnitude_masks(model, keep)
    weights = {n: model.get_submodule(n).weight for n in masks}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=True)
    index = _batches(len(data.train), batch, steps, seed)
    start = time.perf_counter()
    for idx in index:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(data.train.x[idx]), data.train.y[idx]).backward()
        for n, w in weights.items():
            w.grad.mul_(masks[n])
        opt.step()
    return time.perf_counter() - start


def packed(net, keep, data: MNISTData, k: int, steps: int, batch: int, seed: int) -> float:
    """k masked runs (seeds seed..seed+k-1) as one vmapped model. Seconds."""
    models = []
    for i in range(k):
        torch.manual_seed(seed + i)
        models.append(net(dropout=0.0))
    masks = [magnitude_masks(m, keep) for m in models]
    params, buffers = stack_module_state(models)
    stacked = {f"{n}.weight": torch.stack([m[n] for m in masks]).float() for n in keep}
    base = copy.deepcopy(models[0]).to("meta")

    def loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(base, (p, b), (x,)), y)

    step_grads = vmap(grad(loss))
    opt = torch.optim.Adam(params.values(), lr=1e-3, fused=True)
    index = torch.stack([_batches(len(data.train), batch, steps, seed + i) for i in range(k)], dim=1)
    start = time.perf_counter()
    for idx in index:  # (k, batch)
        grads = step_grads(params, buffers, data.train.x[idx], data.train.y[idx])
        for name, p in params.items():
            p.grad = grads[name].mul_(stacked[name]) if name in stacked else grads[name]
        opt.step()
    return time.perf_counter() - start


def measure(args: argparse.Namespace) -> dict[str, Any]:
    data = MNISTData(args.data, args.data_dir, val_size=1000, pixel_scale="unit").setup()
    net, keep = MODELS[args.model]
    threads = torch.get_num_threads()
    times: dict[str, list[float]] = {"single_1thread": [], **{f"packed_{k}": [] for k in args.packs}}
    for r in range(args.rounds):
        torch.set_num_threads(1)
        times["single_1thread"].append(single(net, keep, data, args.steps, args.batch_size, r))
        torch.set_num_threads(threads)
        for k in args.packs:
            times[f"packed_{k}"].append(packed(net, keep, data, k, args.steps, args.batch_size, r))
    med = {name: statistics.median(v) for name, v in times.items()}
    samples = args.steps * args.batch_size
    joblib = 2 * samples / med["single_1thread"]
    rates = {f"packed_{k}": k * samples / med[f"packed_{k}"] for k in args.packs}
    return {"model": args.model, "data": args.data, "batch_size": args.batch_size, "steps": args.steps,
            "rounds": args.rounds, "threads": threads, "provenance": provenance(), "seconds": times,
            "joblib_2_workers_samples_per_s": joblib, "packed_samples_per_s": rates,
            "packed_vs_joblib": {k: v / joblib for k, v in rates.items()}}


def markdown(res: dict[str, Any], command: str) -> str:
    lines = [f"# Packed training (vmap) vs two joblib workers: {res['model']} on {res['data']}, batch "
             f"{res['batch_size']}", "", f"Command: `{command}`. {res['steps']} masked training steps per run, medians "
             f"of {res['rounds']} interleaved rounds; packed runs use {res['threads']} threads.", "",
             describe(res["provenance"]), "", "| runs | samples/s, all runs | vs two joblib workers |",
             "|---|---:|---:|", f"| 2 joblib workers x 1 thread (estimated: 2 x one run on 1 thread) | "
             f"{res['joblib_2_workers_samples_per_s']:.0f} | 1.00 |"]
    lines += [f"| {k.split('_')[1]} packed in one process | {v:.0f} | {res['packed_vs_joblib'][k]:.2f} |"
              for k, v in res["packed_samples_per_s"].items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist10k", choices=["mnist", "mnist10k"])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default="lenet300", choices=list(MODELS))
    ap.add_argument("--packs", type=int, nargs="+", default=[2, 4, 8])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()
    torch.set_flush_denormal(True)
    res = measure(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"packed_{args.model}_{args.data}"
    (out / f"{stem}.json").write_text(json.dumps(res, indent=2) + "\n")
    command = (f"python benchmarks/packed.py --data {args.data} --model {args.model} --packs "
               f"{' '.join(map(str, args.packs))} --steps {args.steps} --rounds {args.rounds}")
    (out / f"{stem}.md").write_text(markdown(res, command))
    print(markdown(res, command))


if __name__ == "__main__":
    main()
