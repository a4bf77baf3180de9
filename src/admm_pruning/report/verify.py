"""Sparsity verified, not assumed: before a summary is published, the final weights and masks are
reloaded from disk and recounted, and every claim in the summary must equal the recount; the
physically shrunk model is exported (in this package's format, as safetensors + JSON and as ONNX),
reloaded from its files and checked against the pruned one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import onnxruntime
import torch
from torch import nn

from admm_pruning.export.formats import ARCHITECTURE, ONNX, WEIGHTS, load_portable, run_onnx, save_portable
from admm_pruning.export.layers import load_shrunk
from admm_pruning.export.shrink import ShrinkError, shrink
from admm_pruning.foundations.files import load_tensors, save_tensors, sha256, write_json
from admm_pruning.report.sparsity import SparsityMismatchError, count_sparsity
from admm_pruning.store.stages import ARTIFACTS, StageResult

# summary key -> count_sparsity key, for every sparsity figure a summary claims.
CLAIMS = {"compression": "compression", "conv_compression": "conv_compression", "total_weights": "total",
          "nonzero_weights": "nonzero", "per_layer": "per_layer"}


def verify_sparsity(summary: dict[str, Any], final: StageResult, prune_dir: Path, layers: list[str]) -> None:
    """Raise SparsityMismatchError unless the files on disk back the summary exactly.

    Checks: the final files are the ones the retrain stage recorded when it finished; no nonzero
    weight lies outside its mask; retraining kept the pruner's masks; and the summary's
    compression figures, totals and per-layer counts equal a fresh recount.
    """
    for name, digest in final.metrics.get(ARTIFACTS, {}).items():
        if sha256(final.dir / name) != digest:
            raise SparsityMismatchError(f"{final.dir / name} changed after its stage finished")
    weights = load_tensors(final.dir / "weights.pt")
    masks = load_tensors(final.dir / "masks.pt")
    pruned = load_tensors(prune_dir / "masks.pt")
    for layer, mask in pruned.items():
        if layer not in masks or not torch.equal(masks[layer].bool(), mask.bool()):
            raise SparsityMismatchError(f"{final.dir / 'masks.pt'}: layer {layer}'s mask differs from "
                                        f"the pruner's {prune_dir / 'masks.pt'}")
    try:
        recount = count_sparsity(weights, layers, masks)
    except SparsityMismatchError as exc:
        raise SparsityMismatchError(f"{final.dir / 'weights.pt'}: {exc}") from exc
    for key, counted in CLAIMS.items():
        if counted in recount and summary.get(key) != recount[counted]:
            raise SparsityMismatchError(f"summary {key}={summary.get(key)!r} but {final.dir / 'weights.pt'} "
                                        f"recounts to {recount[counted]!r}")


def _check(folder: Path, what: str, got: torch.Tensor, ref: torch.Tensor, tol: float) -> float:
    """The largest output difference; SparsityMismatchError beyond ``tol``."""
    diff = (got - ref).abs().max().item() if got.shape == ref.shape else float("inf")
    if not (got.shape == ref.shape and torch.allclose(got, ref, atol=tol, rtol=tol)):
        raise SparsityMismatchError(f"{folder}: {what}'s outputs differ from the pruned model's by up to "
                                    f"{diff:.3g} (tolerance {tol:g})")
    return diff


def verify_export(model: nn.Module, inputs: torch.Tensor, folder: Path, tol: float = 1e-4,
                  preprocessing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Shrink the final ``model`` (zeros in its weights), export it to ``folder`` (model.json +
    weights.pt, loadable with this package's layers; architecture.json + model.safetensors, loadable
    with plain torch.nn; model.onnx), reload each and raise SparsityMismatchError unless it gives
    ``model``'s outputs on ``inputs`` (real test images); the ONNX file is run in onnxruntime.

    A model that is not a chain of layers cannot be shrunk: that is reported, not an error.
    """
    model = model.eval()
    try:
        small = shrink(model, inputs[:1])
    except ShrinkError as exc:
        return {"exported": False, "reason": str(exc)}
    write_json(folder / "model.json", small.config)
    save_tensors(folder / "weights.pt", small.state)
    files = save_portable(small, folder, preprocessing)
    reloaded = load_shrunk(folder)
    with torch.no_grad():
        ref = model(inputs)
        diff = _check(folder, "the exported shrunk model", reloaded(inputs), ref, tol)
        formats = {"safetensors": {"files": [ARCHITECTURE, WEIGHTS], "loader": "plain torch.nn (load_portable)",
                                   "max_abs_diff": _check(folder / WEIGHTS, WEIGHTS, load_portable(folder)(inputs),
                                                          ref, tol)},
                   "onnx": {"files": [ONNX], "runtime": f"onnxruntime {onnxruntime.__version__}",
                            "max_abs_diff": _check(folder / ONNX, ONNX, run_onnx(folder / ONNX, inputs), ref, tol)}
                   if ONNX in files else {"exported": False, "reason": "the exporter cannot express this network"}}
    return {"exported": True, "inputs_checked": len(inputs), "max_abs_diff": diff,
            "parameters": sum(p.numel() for p in reloaded.parameters()),
            "dense_parameters": sum(p.numel() for p in model.parameters()),
            "formats": formats, "files": files}
