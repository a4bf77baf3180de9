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
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F

from admm_pruning.data.mnist import MNISTData
from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.report.provenance import describe, provenance
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.training.context import EVAL_BATCH, StageContext
from admm_pruning.training.modules import ADMMModule, ClassifierModule

MODELS = {"lenet5": (LeNet5, {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}),
          "lenet300": (LeNet300, {"fc1": 0.04, "fc2": 0.07, "fc3": 0.12})}


def plain_loop(net, data: MNISTData, epochs: int, batch: int, seed: int) -> float:
    """The baseline: hand-written PyTorch loop over the same batches. Returns seconds."""
    torch.manual_seed(seed)
    model = net(dropout=0.0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = data.loader("train", batch, shuffle=True, seed=seed)
    val = data.loader("val", EVAL_BATCH)
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
    return time.perf_counter() - start


def suite_loop(net, data: MNISTData, epochs: int, batch: int, seed: int, l2: float = 0.0,
               admm_keep: dict[str, float] | None = None) -> float:
    """The suite's stage loop (Lightning, per-epoch checkpoint, validation). Returns seconds."""
    torch.manual_seed(seed)
    model = net(dropout=0.0)
    opt = partial(torch.optim.Adam, lr=1e-3)
    if admm_keep is None:
        module = ClassifierModule(model, opt, l2=l2)
    else:  # one ADMM iteration per epoch, so the Z/U updates are inside the timing
        schedule = ADMMSchedule(optimizer=opt, iterations=epochs, epochs_per_iteration=1.0, rho=1e-4, l2=l2)
        module = ADMMModule(model, schedule, admm_keep, data.steps_per_epoch(batch))
    trainer_kwargs = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                      "enable_model_summary": False, "num_sanity_val_steps": 0}
    ctx = StageContext(data=data, trainer_kwargs=trainer_kwargs, seed=seed, experiment="bench")
    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        ctx.fit(module, "bench", Path(d), None, batch, max_epochs=epochs)
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="mnist10k", choices=["mnist", "mnist10k"])
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--model", default="lenet5", choices=list(MODELS))
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()

    data = MNISTData(args.data, args.data_dir, val_size=1000 if args.data == "mnist10k" else 5000).setup()
    net, keep = MODELS[args.model]
    samples = args.epochs * len(data.train)
    run = {"plain": [], "suite": [], "dense": [], "admm": []}
    suite_loop(net, data, 1, args.batch_size, 0)  # warm-up: imports, allocator, oneDNN kernels
    for r in range(args.rounds):
        run["plain"].append(plain_loop(net, data, args.epochs, args.batch_size, r))
        run["suite"].append(suite_loop(net, data, args.epochs, args.batch_size, r))
        # dense vs ADMM: both with the recipe's L2 (5e-5), as in pretraining and ADMM
        run["dense"].append(suite_loop(net, data, args.epochs, args.batch_size, r, l2=5e-5))
        run["admm"].append(suite_loop(net, data, args.epochs, args.batch_size, r, l2=5e-5, admm_keep=keep))
        print(f"round {r}: " + "  ".join(f"{k} {v[-1]:.2f}s" for k, v in run.items()), flush=True)
    throughput_ratios = [p / s for p, s in zip(run["plain"], run["suite"], strict=True)]
    admm_ratios = [a / d for a, d in zip(run["admm"], run["dense"], strict=True)]
    result = {
        "model": args.model, "data": args.data, "batch_size": args.batch_size, "epochs": args.epochs,
        "rounds": args.rounds, "train_samples_per_epoch": len(data.train),
        "provenance": provenance(),
        "plain_samples_per_s": samples / statistics.median(run["plain"]),
        "suite_samples_per_s": samples / statistics.median(run["suite"]),
        "throughput_ratio_median": statistics.median(throughput_ratios),
        "throughput_ratios": throughput_ratios,
        "admm_vs_dense_epoch_time_median": statistics.median(admm_ratios),
        "admm_vs_dense_ratios": admm_ratios,
        "seconds": run,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"throughput_{args.model}_{args.data}.json").write_text(json.dumps(result, indent=2) + "\n")
    md = [
        f"# Training throughput: {args.model} on {args.data}, batch {args.batch_size}",
        "",
        f"Command: `python benchmarks/throughput.py --data {args.data} --model {args.model} "
        f"--epochs {args.epochs} --rounds {args.rounds}`. Medians over {args.rounds} interleaved rounds.",
        "",
        describe(result["provenance"]),
        "",
        "| measure | value | target |",
        "|---|---:|---:|",
        f"| plain PyTorch loop | {result['plain_samples_per_s']:.0f} samples/s | |",
        f"| suite (Lightning stage loop) | {result['suite_samples_per_s']:.0f} samples/s | |",
        f"| suite / plain throughput | {result['throughput_ratio_median']:.3f} | >= 0.8 |",
        f"| ADMM epoch time / dense epoch time | {result['admm_vs_dense_epoch_time_median']:.3f} | <= 1.15 |",
        "",
        "Per-round ratios: suite/plain " + ", ".join(f"{x:.3f}" for x in throughput_ratios)
        + "; ADMM/dense " + ", ".join(f"{x:.3f}" for x in admm_ratios) + ".",
    ]
    (out / f"throughput_{args.model}_{args.data}.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
