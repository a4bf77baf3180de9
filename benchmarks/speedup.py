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

from admm_pruning.analysis.paper import load_figures
from admm_pruning.export.layers import ColumnConv2d
from admm_pruning.export.shrink import shrink
from admm_pruning.export.sparse import MAX_DENSITY, sparsify
from admm_pruning.report.flops import FLOPS_DEFINITION, flop_report
from admm_pruning.report.provenance import describe, provenance
from admm_pruning.sparsity.masks import apply_masks
from admm_pruning.store.stages import load_tensors

ROOT = Path(__file__).resolve().parents[1]

# ADAM-ADMM's structured-pruning figures (source, conv_compression, top1_top5, cpu_speedup,
# gpu_speedups): `speedup` in conf/papers/figures.yaml, where every paper figure lives.
PAPER = load_figures()["speedup"]


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


def measure(run: Run, example: torch.Tensor, batches: list[int], devices: list[str], rounds: int,
            warmup: int, block_seconds: float, channels_last: bool = True) -> dict[str, Any]:
    """FLOPs and the dense / masked / shrunk timings of one run. With ``channels_last`` every model
    and input is in that layout (the suite's training layout: PyTorch's NCHW max-pool on CPU is
    several times slower), and the dense model is timed in NCHW too, as ``dense_nchw``."""
    dense, masked = run.model(), run.model(masked=True)
    small = shrink(dense, example)
    shrunk = small.module()
    sparse, shrunk_sparse = run.model(), small.module()
    sparsify(sparse)
    sparsify(shrunk_sparse)
    candidates = [("dense", dense), ("masked", masked), ("shrunk", shrunk), ("sparse", sparse),
                  ("shrunk_sparse", shrunk_sparse)]
    if any(isinstance(m, ColumnConv2d) for m in shrunk.modules()):
        # shape-wise layers run as gather + GEMM: time the dense network on those kernels too, so
        # the speedup from pruning is told apart from the speedup of the kernel itself
        candidates.insert(1, ("dense_gemm", shrink(run.model(), example, min_column_saving=0.0).module()))
    probe = torch.randn(8, *example.shape[1:], generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # all compute the same function, else the timings mean nothing
        ref = dense(probe)
        if not (torch.equal(masked(probe), ref)
                and all(torch.allclose(m(probe), ref, atol=1e-4, rtol=1e-4) for _, m in candidates)):
            raise RuntimeError(f"{run.label}: a masked or shrunk model does not match the dense one")
    fmt = torch.channels_last if channels_last and example.dim() == 4 else torch.contiguous_format
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
    return {"flops": flop_report(run.model(), example), "shrunk_layers": small.kept, "timings": timings}


def _fmt_flops(n: float) -> str:
    return f"{n / 1e6:.3f}M"


def _conv_compression(run: Run) -> float | None:
    conv = [w for k, w in run.weights.items() if k.endswith(".weight") and w.dim() == 4]
    return sum(w.numel() for w in conv) / max(sum(int(torch.count_nonzero(w)) for w in conv), 1) if conv else None


def _sparsity(run: Run) -> str:
    if run.summary is None:
        return "-"
    kinds = run.summary.get("sparsity") or {n: "unstructured" for n in run.summary["keep"]}
    return ", ".join(f"{n} {k} {100 * run.summary['keep'][n]:g}%" for n, k in kinds.items())


def report(runs: list[tuple[Run, dict[str, Any]]], meta: dict[str, Any]) -> str:
    """The Markdown report: FLOPs, measured times and speedups, the paper's figures."""
    lines = [
        "# Measured inference speedup of structured pruning",
        "",
        "Generated by `benchmarks/speedup.py`; do not edit by hand. Command:",
        "",
        f"    {meta['command']}",
        "",
        f"{describe(meta['provenance'])} Each model is timed in "
        f"{meta['rounds']} interleaved rounds after {meta['warmup']} warm-up calls; the table gives the "
        "median time per batch. *dense*: the network without masks; *masked*: the suite's masked "
        "model (weights times a mask on every call); *shrunk*: the physically shrunk dense model, "
        "checked to give the same outputs. A shape-wise pruned conv runs in the shrunk model as a "
        "gather of its used (c, kh, kw) columns + GEMM (`export.layers.ColumnConv2d`); for such runs "
        "*dense GEMM* times the unpruned network with every conv on that same kernel, and the last "
        "column gives shrunk vs dense GEMM: the speedup that pruning alone buys. *sparse*: the "
        "unstructured path (`export.sparse`): every conv and linear layer with at most "
        f"{MAX_DENSITY:.0%} nonzero weights multiplies by a CSR weight (convs through im2col), on the "
        "plain model; *shrunk+sparse*: the same on the shrunk model. Layout: "
        f"{meta['layout']} for every model and input; *dense NCHW* times the dense model in "
        "PyTorch's default layout as well (speedups are against *dense*).",
        "",
        "## Computation",
        "",
        "| run | per-layer sparsity, keep | top-1 | compression | conv compression (shrunk) | FLOPs dense "
        "| FLOPs remaining | theoretical speedup | FLOPs shrunk model | shrunk layers (out / in kept) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for run, m in runs:
        f, s = m["flops"], run.summary or {}
        acc = f"{100 * s['final_acc']:.2f}%" if "final_acc" in s else "-"
        comp = f"{s['compression']:.2f}x" if "compression" in s else "-"
        cc = _conv_compression(run)
        layers = "; ".join(f"{n} {d['out'][0]}/{d['out'][1]}, {d['in'][0]}/{d['in'][1]}"
                           for n, d in m["shrunk_layers"].items())
        lines.append(
            f"| {run.label} | {_sparsity(run)} | {acc} | {comp} | "
            f"{f'{cc:.2f}x' if cc else '-'} ({f['shrunk_conv_compression']:.2f}x) | {_fmt_flops(f['dense'])} | "
            f"{_fmt_flops(f['remaining'])} | {f['theoretical_speedup']:.2f}x | {_fmt_flops(f['shrunk'])} "
            f"({f['shrunk_speedup']:.2f}x fewer) | {layers} |")
    lines += ["", f"FLOPs: {FLOPS_DEFINITION}", "", "## Measured inference time", "",
              "| run | device | batch | dense ms | dense NCHW ms | dense GEMM ms | masked ms | shrunk ms | sparse ms | "
              "shrunk+sparse ms | masked speedup | shrunk speedup | sparse speedup | shrunk+sparse speedup | "
              "theoretical | shrunk vs dense GEMM |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for run, m in runs:
        for t in m["timings"]:
            sec, sp = t["seconds"], t["speedup"]
            gemm = sec.get("dense_gemm")
            gemm_ms, vs_gemm = (f"{1e3 * gemm:.3f}", f"{gemm / sec['shrunk']:.2f}x") if gemm else ("-", "-")
            ms = " | ".join(f"{1e3 * sec[k]:.3f}" for k in ("masked", "shrunk", "sparse", "shrunk_sparse"))
            ups = " | ".join(f"{sp[k]:.2f}x" for k in ("masked", "shrunk", "sparse", "shrunk_sparse"))
            nchw = f"{1e3 * sec['dense_nchw']:.3f}" if "dense_nchw" in sec else "-"
            lines.append(f"| {run.label} | {t['device']} | {t['batch']} | {1e3 * sec['dense']:.3f} | {nchw} | "
                         f"{gemm_ms} | {ms} | {ups} | {m['flops']['theoretical_speedup']:.2f}x | {vs_gemm} |")
    run, m = runs[0]
    cpu = [t for t in m["timings"] if t["device"] == "cpu"]
    best = max(cpu, key=lambda t: t["batch"]) if cpu else None
    cpu_ours = f"{best['speedup']['shrunk']:.2f}x (batch {best['batch']})" if best else "not measured"
    if best and "dense_gemm" in best["seconds"]:
        cpu_ours += f"; {best['seconds']['dense_gemm'] / best['seconds']['shrunk']:.2f}x vs dense GEMM"
    gpu_ours = ", ".join(f"{t['speedup']['shrunk']:.2f}x (batch {t['batch']})"
                         for t in m["timings"] if t["device"].startswith("cuda")) or "not measured (no GPU)"
    cc = _conv_compression(run)
    gpu_paper = " and ".join(f"{x}x" for x in PAPER["gpu_speedups"])
    lines += [
        "",
        f"## Ours beside the paper ({run.label})",
        "",
        f"| | ours | paper: {PAPER['source']} |",
        "|---|---:|---:|",
        f"| conv compression (masked weights / shrunk model) | {f'{cc:.2f}x' if cc else '-'} / "
        f"{m['flops']['shrunk_conv_compression']:.2f}x | {PAPER['conv_compression']}x "
        f"(top-1 / top-5 {PAPER['top1_top5']}) |",
        f"| theoretical speedup (dense / remaining FLOPs) | {m['flops']['theoretical_speedup']:.2f}x | - |",
        f"| measured CPU speedup, shrunk vs dense | {cpu_ours} | {PAPER['cpu_speedup']}x |",
        f"| measured GPU speedup, shrunk vs dense | {gpu_ours} | {gpu_paper} (two GPUs) |",
        "",
        "The paper's figures are for CaffeNet on ImageNet, ours for LeNet-5 on MNIST: the rows set "
        "the kind of result side by side, not equal workloads.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", help="summary.json of a finished run, or its retrain stage folder")
    ap.add_argument("--compare", nargs="*", default=[], help="more runs, e.g. an unstructured preset")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 256])
    ap.add_argument("--rounds", type=int, default=21)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--block-seconds", type=float, default=0.05)
    ap.add_argument("--input-shape", type=int, nargs="+", default=[1, 28, 28], help="one input, without batch")
    ap.add_argument("--layout", choices=["channels_last", "nchw"], default="channels_last",
                    help="memory layout of every model and input (channels_last: the suite's training layout)")
    ap.add_argument("--out", default="results/speedup.md")
    args = ap.parse_args(argv)

    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    example = torch.randn(1, *args.input_shape, generator=torch.Generator().manual_seed(0))
    runs = []
    for path in [args.run, *args.compare]:
        run = load_run(Path(path))
        runs.append((run, measure(run, example, args.batches, devices, args.rounds, args.warmup,
                                  args.block_seconds, channels_last=args.layout == "channels_last")))
    meta = {"command": shlex.join(["python", "benchmarks/speedup.py", *(argv if argv is not None else sys.argv[1:])]),
            "provenance": provenance(devices[-1]), "rounds": args.rounds, "warmup": args.warmup,
            "layout": "channels-last" if args.layout == "channels_last" else "NCHW"}
    text = report(runs, meta)
    out = _path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    return text


if __name__ == "__main__":
    main()
