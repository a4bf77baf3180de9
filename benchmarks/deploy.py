"""Inference as users deploy a small exported model: onnxruntime on the CPU, batch 1 and 256, the
dense network against the masked model exported as it trains (weight x mask in the graph) against
the shrunk export (the run's model.onnx). Writes results/deploy.md (generated; never hand-edited):
median time per batch over interleaved rounds, speedups against dense, the FLOPs speedup the
summary records, and where the time goes (onnxruntime's profiler, self time per operator type).

    python benchmarks/deploy.py RUN/summary.json [...] --out results/deploy.md

A run is a finished summary.json whose stage folders (pretrain, retrain) and export folder are at
hand: the dense weights come from the pretrain stage, weights and masks from the retrain stage.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from hydra.utils import instantiate

from admm_pruning.export.formats import ONNX, _onnx_bytes
from admm_pruning.foundations.files import load_tensors
from admm_pruning.report.provenance import provenance
from admm_pruning.sparsity.masks import apply_masks
from sparse_kernels import probe

BATCHES = (1, 256)
KINDS = ("dense", "masked", "shrunk")


def graphs(summary: dict[str, Any]) -> dict[str, bytes]:
    """The three ONNX graphs of one run: dense and masked exported here, shrunk as the run exported it."""
    stages, shape = summary["stage_dirs"], summary["flops"]["input_shape"]
    for path in (Path(stages["pretrain"]), Path(stages["retrain"]), Path(summary["export_dir"])):
        if not path.is_dir():
            raise SystemExit(f"{path}: not on this machine; rerun experiment={summary['experiment']} "
                             f"pruner={summary['pruner']} seed={summary['seed']} (its stage folders) first")
    net = summary["config"]["model"]["net"]
    dense = instantiate(net).eval()
    dense.load_state_dict(load_tensors(Path(stages["pretrain"]) / "weights.pt"))
    masked = instantiate(net).eval()
    masked.load_state_dict(load_tensors(Path(stages["retrain"]) / "weights.pt"))
    apply_masks(masked, load_tensors(Path(stages["retrain"]) / "masks.pt"))
    example = torch.zeros(*shape)
    return {"dense": _onnx_bytes(dense, example), "masked": _onnx_bytes(masked, example),
            "shrunk": (Path(summary["export_dir"]) / ONNX).read_bytes()}


def session(blob: bytes, threads: int, profile: str | None = None) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile:
        opts.enable_profiling, opts.profile_file_prefix = True, profile
    return ort.InferenceSession(blob, opts, providers=["CPUExecutionProvider"])


def agree(sessions: dict[str, ort.InferenceSession], x: np.ndarray) -> float:
    """Largest output difference between the masked and the shrunk graph (they must compute one function)."""
    out = {k: sessions[k].run(None, {"input": x})[0] for k in ("masked", "shrunk")}
    return float(np.abs(out["masked"] - out["shrunk"]).max())


def time_all(sessions: dict[str, ort.InferenceSession], x: np.ndarray, rounds: int, calls: int) -> dict[str, float]:
    """Median ms per call over ``rounds`` rounds, each timing every graph in turn (noise hits all alike)."""
    times: dict[str, list[float]] = defaultdict(list)
    for _ in range(5):
        for s in sessions.values():
            s.run(None, {"input": x})
    for _ in range(rounds):
        for kind, s in sessions.items():
            start = time.perf_counter()
            for _ in range(calls):
                s.run(None, {"input": x})
            times[kind].append(1e3 * (time.perf_counter() - start) / calls)
    return {k: statistics.median(v) for k, v in times.items()}


def op_profile(blob: bytes, x: np.ndarray, threads: int, calls: int) -> dict[str, float]:
    """Share of the operators' self time per operator type, from onnxruntime's profiler."""
    with tempfile.TemporaryDirectory() as tmp:
        s = session(blob, threads, profile=str(Path(tmp) / "ort"))
        for _ in range(calls):
            s.run(None, {"input": x})
        events = json.loads(Path(s.end_profiling()).read_text())
    per_op: dict[str, float] = defaultdict(float)
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per_op[e["args"]["op_name"]] += e["dur"]
    total = sum(per_op.values())
    return {op: 100 * t / total for op, t in sorted(per_op.items(), key=lambda kv: -kv[1])}


def measure(path: Path, threads: int, rounds: int) -> dict[str, Any]:
    summary = json.loads(path.read_text())
    blobs = graphs(summary)
    sessions = {k: session(b, threads) for k, b in blobs.items()}
    shape = summary["flops"]["input_shape"][1:]
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"summary": summary, "path": str(path), "bytes": {k: len(b) for k, b in blobs.items()},
                           "times": {}, "profile": {}}
    for batch in BATCHES:
        x = rng.random((batch, *shape), dtype=np.float32)
        out["max_diff"] = max(out.get("max_diff", 0.0), agree(sessions, x))
        out["times"][batch] = time_all(sessions, x, rounds, calls=max(1, 200 // batch))
    x = rng.random((BATCHES[-1], *shape), dtype=np.float32)
    out["profile"] = {k: op_profile(blobs[k], x, threads, calls=10) for k in ("dense", "shrunk")}
    if set(summary["sparsity"].values()) == {"unstructured"}:
        out["probe"] = probe(Path(summary["export_dir"]), summary["flops"]["input_shape"], BATCHES[-1], threads)
    return out


def label(summary: dict[str, Any]) -> str:
    kinds = sorted(set(summary["sparsity"].values()))
    return (f"{summary['experiment']} {summary['pruner']} x{summary['compression']:.1f} "
            f"({'/'.join(kinds)}; {summary['data']}, seed {summary['seed']})")


def render(results: list[dict[str, Any]], threads: int, rounds: int, command: str, load: float) -> str:
    prov = provenance()
    lines = ["# Deployed inference: onnxruntime on the CPU", "",
             f"Generated by `benchmarks/deploy.py`; do not edit by hand. Command:\n\n    {command}\n",
             f"Made on {prov['cpu']}, onnxruntime {ort.__version__} with {threads} intra-op thread(s), torch "
             f"{prov['torch']}; code git {prov.get('commit', '?')}; load average {load:.1f} on "
             f"{prov['cpu_count']} cores when it began (other work shares the cores above 0; the rounds "
             f"interleave, so the ratios hold better than the times). Each graph is timed in {rounds} interleaved "
             "rounds after warm-up; the table gives the median ms per call. *dense*: the unpruned network "
             "(pretrain stage); *masked*: the pruned model exported as it trains (weight x mask in the graph); "
             "*shrunk*: the run's exported model.onnx (dead filters, channels, rows and columns removed; "
             "shape-wise convs as im2col + kept columns). *theoretical*: dense FLOPs / FLOPs of the nonzero "
             "weights (the summary's). Masked and shrunk graphs agree to the largest output difference shown.", "",
             "| run | top-1 | batch | dense ms | masked ms | shrunk ms | masked speedup | shrunk speedup "
             "| theoretical | masked vs shrunk max diff |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        s = r["summary"]
        for batch, t in r["times"].items():
            lines.append(f"| {label(s)} | {100 * s['final_acc']:.2f}% | {batch} | {t['dense']:.3f} | "
                         f"{t['masked']:.3f} | {t['shrunk']:.3f} | {t['dense'] / t['masked']:.2f}x | "
                         f"{t['dense'] / t['shrunk']:.2f}x | {s['flops']['theoretical_speedup']:.2f}x | "
                         f"{r['max_diff']:.1e} |")
    lines += ["", f"## Where the time goes (batch {BATCHES[-1]}: share of operator self time)", ""]
    for r in results:
        lines += [f"**{label(r['summary'])}**", "", "| graph | " + " | ".join(["op", "share"] * 4) + " |",
                  "|---|" + "---|---:|" * 4]
        for kind, ops in r["profile"].items():
            top = list(ops.items())[:4]
            cells = " | ".join(f"{op} | {share:.0f}%" for op, share in top)
            lines.append(f"| {kind} | {cells}" + " | |" * (4 - len(top)) + " |")
        lines.append("")
    probes = [r for r in results if "probe" in r]
    if probes:
        lines += [f"## Sparse kernels on the costliest conv (batch {BATCHES[-1]}, as an im2col GEMM)", "",
                  "The unstructured runs' shrunk graphs keep each layer's zeros. Whether a well-kept sparse "
                  "kernel would pay on the layer that takes the time: the conv's kept weights (out x in*kh*kw, "
                  "density as shown) times its im2col columns, dense against CSR, in onnxruntime "
                  "(MatMul against com.microsoft.SparseToDenseMatMul) and in torch (mm against sparse.mm), "
                  f"each with {threads} thread(s), median of 11.", "",
                  "| run | layer | GEMM m x k x n | density | ort dense ms | ort CSR ms | torch dense ms "
                  "| torch CSR ms | best CSR vs best dense |", "|---|---|---|---:|---:|---:|---:|---:|---:|"]
        for r in probes:
            p = r["probe"]
            best = min(p["ort_dense"], p["torch_dense"]) / min(p["ort_csr"], p["torch_csr"])
            lines.append(f"| {label(r['summary'])} | {p['layer']} | {' x '.join(map(str, p['shape']))} | "
                         f"{100 * p['density']:.1f}% | {p['ort_dense']:.2f} | {p['ort_csr']:.2f} | "
                         f"{p['torch_dense']:.2f} | {p['torch_csr']:.2f} | {best:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="summary.json of finished runs")
    parser.add_argument("--out", type=Path, default=Path("results/deploy.md"))
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    load = os.getloadavg()[0]
    results = [measure(p, args.threads, args.rounds) for p in args.runs]
    command = "python " + " ".join(shlex.quote(a) for a in sys.argv)
    args.out.write_text(render(results, args.threads, args.rounds, command, load) + "\n")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
