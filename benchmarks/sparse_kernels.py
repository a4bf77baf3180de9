"""Whether a well-kept sparse kernel beats the dense one on a run's costliest conv, as a GEMM
(im2col: out x in*kh*kw weights times in*kh*kw x batch*ho*wo columns): onnxruntime's MatMul
against its CSR ``com.microsoft.SparseToDenseMatMul``, and torch's dense ``mm`` against its CSR
``sparse.mm``. Used by benchmarks/deploy.py for the unstructured runs."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper
from torch import nn

from admm_pruning.export.formats import load_portable


def costliest_conv(export_dir: Path, input_shape: list[int]) -> tuple[str, torch.Tensor, int]:
    """(name, weight, output pixels) of the shrunk model's conv with the most dense multiply-adds."""
    model = load_portable(export_dir).eval()
    found: list[tuple[int, str, torch.Tensor, int]] = []
    hooks = [m.register_forward_hook(lambda m, i, o, n=n: found.append(
        (m.weight[0].numel() * o.shape[1] * o.shape[2] * o.shape[3], n, m.weight.detach(), o.shape[2] * o.shape[3])))
        for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        model(torch.zeros(1, *input_shape[1:]))
    for h in hooks:
        h.remove()
    _, name, weight, pixels = max(found, key=lambda f: f[0])
    return name, weight, pixels


def _median_ms(fn: Callable[[], Any], rounds: int) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def _ort_session(sparse: bool, m: int, k: int, n: int, threads: int, dense_w: np.ndarray) -> ort.InferenceSession:
    a = (helper.make_sparse_tensor_value_info if sparse else helper.make_tensor_value_info)("A", TensorProto.FLOAT,
                                                                                          [m, k])
    b = helper.make_tensor_value_info("B", TensorProto.FLOAT, [k, n])
    y = helper.make_tensor_value_info("Y", TensorProto.FLOAT, [m, n])
    op, domain = ("SparseToDenseMatMul", "com.microsoft") if sparse else ("MatMul", "")
    graph = helper.make_graph([helper.make_node(op, ["A", "B"], ["Y"], domain=domain)], "gemm",
                              [a, b] if sparse else [b], [y],
                              initializer=[] if sparse else [numpy_helper.from_array(dense_w, "A")])
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    return ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])


def probe(export_dir: Path, input_shape: list[int], batch: int, threads: int, rounds: int = 11) -> dict[str, Any]:
    """Dense and CSR GEMM times (ms) for the costliest conv at ``batch``, in onnxruntime and torch."""
    name, weight, pixels = costliest_conv(export_dir, input_shape)
    w = weight.reshape(weight.shape[0], -1).numpy().astype(np.float32)
    m, k, n = w.shape[0], w.shape[1], batch * pixels
    cols = np.random.default_rng(0).standard_normal((k, n), dtype=np.float32)
    rows, cidx = np.nonzero(w)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=m))]).astype(np.int64)
    csr = ort.SparseTensor.sparse_csr_from_numpy([m, k], w[rows, cidx].copy(), cidx.astype(np.int64), indptr,
                                                 ort.OrtDevice.make("cpu", 0))
    feeds = {"A": ort.OrtValue.ort_value_from_sparse_tensor(csr), "B": ort.OrtValue.ortvalue_from_numpy(cols)}
    dense_s, sparse_s = (_ort_session(s, m, k, n, threads, w) for s in (False, True))
    out_dense = dense_s.run(None, {"B": cols})[0]
    out_sparse = sparse_s.run_with_ort_values(["Y"], feeds)[0].numpy()
    assert np.allclose(out_dense, out_sparse, atol=1e-3), "the CSR kernel must compute the same product"
    wt, ct = torch.from_numpy(w), torch.from_numpy(cols)
    wcsr = wt.to_sparse_csr()
    with torch.no_grad():
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            times = {"ort_dense": _median_ms(lambda: dense_s.run(None, {"B": cols}), rounds),
                     "ort_csr": _median_ms(lambda: sparse_s.run_with_ort_values(["Y"], feeds), rounds),
                     "torch_dense": _median_ms(lambda: wt @ ct, rounds),
                     "torch_csr": _median_ms(lambda: torch.sparse.mm(wcsr, ct), rounds)}
        finally:
            torch.set_num_threads(previous)
    return {"layer": name, "shape": (m, k, n), "density": len(rows) / w.size, **times}
