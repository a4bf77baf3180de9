"""Measured inference speedup of a pruned run: the dense model, the masked model and the
physically shrunk model (``admm_pruning.export.shrink``) timed in one process, with their FLOPs.

A run is a finished summary.json or a stage folder holding weights.pt and masks.pt (the retrain
stage). The dense model is the same network without masks; its weights do not change its time.
Rounds are interleaved (each round times every model) and the median per-batch time is reported,
so machine noise hits all models alike. Writes a Markdown report (never hand-edited) with the
ADAM-ADMM paper's reported speedups beside ours, labelled "paper".

    python benchmarks/speedup.py results/lenet5_admm_structured/mnist10k/seed0/summary.json \
        --compare results/lenet5_admm_71x/mnist10k/seed0/summary.json --out results/speedup.md
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from admm_pruning.analysis.speedup_table import report
from admm_pruning.export.layers import ColumnConv2d
from admm_pruning.export.shrink import shrink
from admm_pruning.export.sparse import sparsify
from admm_pruning.foundations.files import load_tensors
from admm_pruning.report.flops import flop_report
from admm_pruning.report.provenance import provenance
from admm_pruning.sparsity.masks import apply_masks

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Run:
    """A finished run: its label, summary (if given one), network and final weights and masks."""

    label: str
    summary: dict[str, Any] | None
    net: dict[str, Any]
    weights: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]

    def model(self, masked: bool = False) -> nn.Module:
        torch.manual_seed(0)
        model = instantiate(self.net)
        model.load_state_dict(self.weights)
        if masked:
            apply_masks(model, self.masks)
        return model.eval()


def _path(p: str | Path) -> Path:
    p = Path(p)
    return p if p.is_absolute() or p.exists() else ROOT / p


def load_run(path: Path) -> Run:
    """A run from its summary.json, or from a stage folder (the network from its settings.json)."""
    path = _path(path)
    if path.is_file():
        summary = json.loads(path.read_text())
        stage = _path(summary["stage_dirs"]["retrain"])
        net = summary["config"]["model"]["net"]
        label = f"{summary['experiment']} ({summary['data']})"
    else:
        summary, stage = None, path
        settings = json.loads((stage / "settings.json").read_text())
        while "model" not in settings:
            settings = settings["parent"]
        net, label = settings["model"]["net"], stage.name
    return Run(label, summary, net, load_tensors(stage / "weights.pt"), load_tensors(stage / "masks.pt"))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_models(models: dict[str, nn.Module], inputs: dict[str, torch.Tensor], rounds: int, warmup: int,
                block_seconds: float) -> dict[str, float]:
    """Median seconds per forward pass of each model on its input (one batch, each model's layout),
    over interleaved rounds.

    Each round times a block of calls per model; the block length is set from the first model's
    warm-up speed so that one block lasts about ``block_seconds``.
    """
    device = next(iter(inputs.values())).device
    with torch.inference_mode():
        for k, m in models.items():
            for _ in range(warmup):
                m(inputs[k])
        _sync(device)
        start = time.perf_counter()
        first, x = next(iter(models.values())), next(iter(inputs.values()))
        for _ in range(3):
            first(x)
        _sync(device)
        calls = max(1, round(block_seconds / ((time.perf_counter() - start) / 3)))
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(rounds):
            for k, m in models.items():
                x = inputs[k]
                _sync(device)
                start = time.perf_counter()
                for _ in range(calls):
                    m(x)
                _sync(device)
                times[k].append((time.perf_counter() - start) / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def dense_gemm_model(run: Run, example: torch.Tensor) -> nn.Module:
    """The unpruned network (every filter, channel and kernel column; fresh weights, as time does
    not depend on values) with every conv run as ColumnConv2d's gather + GEMM, checked against
    the same network's own convolutions."""
    torch.manual_seed(0)
    unpruned = instantiate(run.net).eval()
    gemm = shrink(unpruned, example, min_column_saving=0.0).module()
    probe = torch.randn(8, *example.shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        if not torch.allclose(gemm(probe), unpruned(probe), atol=1e-4, rtol=1e-4):
            raise RuntimeError(f"{run.label}: the dense GEMM model does not match the dense network")
    return gemm


# aten ops by what they do; the rest (copies, reshapes, bias adds) is "other". A gather
# (index_select: ColumnConv2d's im2col, a Select) counts with the GEMMs, as a dense conv's own
# im2col is inside its kernel.
OP_KINDS = {"conv / GEMM": ("conv", "addmm", "mm", "bmm", "matmul", "sparse", "linear", "index_select"),
            "pooling": ("pool",), "ReLU": ("relu", "clamp_min")}


def time_by_op(model: nn.Module, x: torch.Tensor, calls: int = 20) -> dict[str, float]:
    """Seconds per forward pass spent in each kind of op (OP_KINDS; self CPU time from
    torch.profiler), to show where a model's time goes besides the FLOPs the papers count."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        for _ in range(3):
            model(x)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(calls):
                model(x)
    kinds = dict.fromkeys([*OP_KINDS, "other"], 0.0)
    for event in prof.key_averages():
        if not event.key.startswith("aten::"):
            continue
        kind = next((k for k, names in OP_KINDS.items() if any(n in event.key for n in names)), "other")
        kinds[kind] += event.self_cpu_time_total / 1e6 / calls
    return kinds


def measure(run: Run, example: torch.Tensor, batches: list[int], devices: list[str], rounds: int,
            warmup: int, block_seconds: float) -> dict[str, Any]:
    """FLOPs and the dense / masked / shrunk timings of one run. Image models and inputs run
    channels-last, the suite's training layout (PyTorch's NCHW max-pool on CPU is several times
    slower; ColumnConv2d writes channels-last), and the dense model is timed in NCHW too, as
    ``dense_nchw``."""
    dense, masked = run.model(), run.model(masked=True)
    small = shrink(dense, example)
    shrunk = small.module()
    sparse, shrunk_sparse = run.model(), small.module()
    sparsify(sparse)
    sparsify(shrunk_sparse)
    candidates = [("dense", dense), ("masked", masked), ("shrunk", shrunk), ("sparse", sparse),
                  ("shrunk_sparse", shrunk_sparse)]
    probe = torch.randn(8, *example.shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # all compute the same function, else the timings mean nothing
        ref = dense(probe)
        if not (torch.equal(masked(probe), ref)
                and all(torch.allclose(m(probe), ref, atol=1e-4, rtol=1e-4) for _, m in candidates)):
            raise RuntimeError(f"{run.label}: a masked or shrunk model does not match the dense one")
    if any(isinstance(m, ColumnConv2d) for m in shrunk.modules()):
        # shape-wise layers run as gather + GEMM: time the dense network on those kernels too, so
        # the speedup from pruning is told apart from the speedup of the kernel itself
        candidates.insert(1, ("dense_gemm", dense_gemm_model(run, example)))
    fmt = torch.channels_last if example.dim() == 4 else torch.contiguous_format
    if fmt is torch.channels_last:
        candidates.append(("dense_nchw", run.model()))
    timings = []
    for device in devices:
        models = {k: m.to(device) if k == "dense_nchw" else m.to(device, memory_format=fmt) for k, m in candidates}
        for batch in batches:
            x = torch.randn(batch, *example.shape[1:], generator=torch.Generator().manual_seed(2)).to(device)
            inputs = {k: x if k == "dense_nchw" else x.contiguous(memory_format=fmt) for k in models}
            secs = time_models(models, inputs, rounds, warmup, block_seconds)
            timings.append({"device": device, "batch": batch, "seconds": secs,
                            "speedup": {k: secs["dense"] / v for k, v in secs.items()}})
            print(f"{run.label} {device} batch {batch}: " + "  ".join(
                f"{k} {1e3 * v:.3f} ms ({secs['dense'] / v:.2f}x)" for k, v in secs.items()), flush=True)
    models = {k: m.cpu() for k, m in candidates if k in ("dense", "shrunk")}
    x = torch.randn(max(batches), *example.shape[1:], generator=torch.Generator().manual_seed(2))
    by_op = {"batch": max(batches), **{k: time_by_op(m, x.contiguous(memory_format=fmt)) for k, m in models.items()}}
    return {"flops": flop_report(run.model(), example), "shrunk_layers": small.kept, "timings": timings,
            "by_op": by_op}


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="summary.json of a finished run, or its retrain stage folder")
    ap.add_argument("--compare", nargs="*", default=[], help="more runs, e.g. an unstructured preset")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--block-seconds", type=float, default=0.05)
    ap.add_argument("--input-shape", type=int, nargs="+", default=[1, 28, 28], help="one input, without batch")
    ap.add_argument("--out", default="results/speedup.md")
    args = ap.parse_args(argv)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    example = torch.randn(1, *args.input_shape, generator=torch.Generator().manual_seed(0))
    runs = []
    for path in [args.run, *args.compare]:
        run = load_run(Path(path))
        runs.append((run, measure(run, example, args.batches, devices, args.rounds, args.warmup,
                                  args.block_seconds)))
    meta = {"command": shlex.join(["python", "benchmarks/speedup.py", *(argv if argv is not None else sys.argv[1:])]),
            "provenance": provenance(devices[-1]), "rounds": args.rounds, "warmup": args.warmup}
    text = report(runs, meta)
    out = _path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
