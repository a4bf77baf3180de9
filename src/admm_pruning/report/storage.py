"""What the pruned weights cost on disk: the papers report compression by weight count (weights /
nonzero weights), but every stored nonzero also needs its position, so the bytes shrink less.

Counted: the prunable weights only (conv and linear weights; biases excluded, as in the papers),
fp32 values. A conv weight is stored as the 2-D matrix (out, in * kh * kw). Per layer:

- ``dense``: 4 bytes per weight.
- ``csr``: 4-byte value + int32 column index per nonzero, and rows + 1 int32 row pointers.
- ``csr_relative``: CSR with Deep Compression's relative indices (Han et al. 2016, section 2): each
  entry is a 4-byte value plus a 16-bit code of the gap to the previous entry of its row; the row
  pointers stay int32. Exact rule: within a row, the nonzeros at columns c_1 < c_2 < ... are
  reached by gaps d_k = c_k - c_{k-1}, with c_0 = -1 (so d >= 1), each stored as d - 1 in b bits
  (b = 16: gaps 1 .. 2^b). A gap d > 2^b first inserts (d - 1) // 2^b filler entries (value 0),
  each 2^b columns after the previous entry, as Han does when a gap overflows his 8 / 5 bits.
  Entries (nonzeros + fillers) cost ceil(entries * (32 + b) / 8) bytes.
- ``bitmask``: 1 bit per weight (ceil(weights / 8) bytes) + a 4-byte value per nonzero.

Compression on disk is dense bytes / format bytes.
"""

from __future__ import annotations

from typing import Any

import torch

VALUE_BYTES = INDEX_BYTES = 4  # fp32 values, int32 indices and row pointers
RELATIVE_BITS = 16
FORMATS = {
    "dense": "fp32, every weight",
    "csr": "fp32 values + int32 column indices + int32 row pointers",
    "csr_relative": "fp32 values + 16-bit relative column indices (Han et al.; filler zeros on overflow) "
                 "+ int32 row pointers",
    "bitmask": "1 bit per weight + fp32 values of the nonzeros",
}
LABELS = {"dense": "dense fp32", "csr": "CSR, int32 indices", "csr_relative": "CSR, 16-bit relative indices (Han)",
          "bitmask": "bitmask + values"}
EXPORT_FILES = "the exported shrunk model as written: biases included, the kept weights stored dense"
COUNTED = ("prunable weights only (conv and linear weights; biases excluded, as in the papers); conv "
           "weights as (out, in*kh*kw) matrices")


def relative_fillers(matrix: torch.Tensor, bits: int = RELATIVE_BITS) -> int:
    """Filler entries a relative-index CSR needs: the gaps too long for ``bits`` (module docstring)."""
    rows, cols = (matrix != 0).nonzero(as_tuple=True)
    prev = torch.full_like(cols, -1)
    prev[1:] = torch.where(rows[1:] == rows[:-1], cols[:-1], -1)
    return int(((cols - prev - 1) // (1 << bits)).sum())


def layer_bytes(weight: torch.Tensor, bits: int = RELATIVE_BITS) -> dict[str, int]:
    """Bytes of one weight tensor in each format, and the fillers the relative indices need."""
    matrix = weight.detach().reshape(weight.shape[0], -1)
    numel, nonzero = matrix.numel(), int(torch.count_nonzero(matrix))
    pointers = INDEX_BYTES * (matrix.shape[0] + 1)
    fillers = relative_fillers(matrix, bits)
    return {"dense": VALUE_BYTES * numel,
            "csr": (VALUE_BYTES + INDEX_BYTES) * nonzero + pointers,
            "csr_relative": -(-(nonzero + fillers) * (8 * VALUE_BYTES + bits) // 8) + pointers,
            "bitmask": -(-numel // 8) + VALUE_BYTES * nonzero,
            "fillers": fillers}


def storage_report(weights: dict[str, torch.Tensor], layers: list[str]) -> dict[str, Any]:
    """The summary's ``storage`` block: bytes per format, per layer and in all, each format's
    compression on disk beside the weight-count compression."""
    per_layer = {name: layer_bytes(weights[f"{name}.weight"]) for name in layers}
    total = sum(weights[f"{name}.weight"].numel() for name in layers)
    nonzero = sum(int(torch.count_nonzero(weights[f"{name}.weight"])) for name in layers)
    dense = sum(d["dense"] for d in per_layer.values())
    formats = {}
    for fmt in FORMATS:
        size = sum(d[fmt] for d in per_layer.values())
        formats[fmt] = {"bytes": size, "compression": dense / size}
    formats["csr_relative"].update(index_bits=RELATIVE_BITS, fillers=sum(d["fillers"] for d in per_layer.values()))
    return {"counted": COUNTED, "weights": total, "nonzero_weights": nonzero,
            "weight_compression": total / max(nonzero, 1), "formats": formats, "format_definitions": FORMATS,
            "per_layer": per_layer}


def storage_table(storage: dict[str, Any] | None) -> list[str]:
    """table.md's storage lines (none for a summary written before storage was reported)."""
    if not storage:
        return []
    lines = ["| Storage of the prunable weights | Bytes | Compression on disk | Compression by weight count |",
             "|---|---:|---:|---:|"]
    for fmt, d in storage["formats"].items():
        by_count = "-" if fmt == "dense" else f"{storage['weight_compression']:.2f}x"
        lines.append(f"| {LABELS[fmt]} | {d['bytes']:,} | {d['compression']:.2f}x | {by_count} |")
    lines += ["", f"Storage: {storage['counted']}; compression on disk = dense bytes / format bytes "
                  "(definitions: summary.json, storage.format_definitions)."]
    files = (storage.get("export_files") or {}).get("bytes")
    if files:
        lines.append(f"Export files ({EXPORT_FILES}): " + ", ".join(f"{n} {b:,} bytes" for n, b in files.items()) + ".")
    return [*lines, ""]
