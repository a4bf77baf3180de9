"""Bytes of the pruned weights in each sparse format, against answers computed by hand."""

import pytest
import torch

from admm_pruning.report.sparsity import write_table
from admm_pruning.report.storage import layer_bytes, relative_fillers, storage_report

# 2 rows x 4 columns, 3 nonzeros.
SMALL = torch.tensor([[0.0, 1.5, 0.0, 0.0],
                      [2.0, 0.0, 0.0, -1.0]])


def test_each_format_of_a_small_matrix():
    # dense 8 x 4; CSR 3 x (4 + 4) + 3 row pointers x 4; relative: 3 x (4 + 2) + 12; bitmask 1 byte + 3 x 4
    assert layer_bytes(SMALL) == {"dense": 32, "csr": 36, "csr_relative": 30, "bitmask": 13, "fillers": 0}


def test_a_conv_weight_is_stored_as_out_by_in_kh_kw():
    # (2, 1, 2, 2) is the 2 x 4 matrix above: 2 rows (3 pointers), not 4 rows of kw columns
    assert layer_bytes(SMALL.reshape(2, 1, 2, 2)) == layer_bytes(SMALL)


def test_a_gap_beyond_16_bits_inserts_a_filler_entry():
    row = torch.zeros(1, 70000)
    row[0, [5, 5 + 65537, 69999]] = 1.0  # gaps 6, 65537 (> 2^16: one filler), 4457
    assert relative_fillers(row) == 1
    # 4 entries x 6 bytes + 2 row pointers x 4
    assert layer_bytes(row)["csr_relative"] == 32 and layer_bytes(row)["csr"] == 3 * 8 + 8


@pytest.mark.parametrize(("column", "fillers"), [(65535, 0), (65536, 1)])
def test_the_first_gap_counts_from_column_minus_one(column, fillers):
    row = torch.zeros(1, 70000)
    row[0, column] = 1.0  # gap column + 1: 65536 fits in 16 bits (stored as 65535), 65537 does not
    assert relative_fillers(row) == fillers


def test_han_figure_2_with_3_bit_indices():
    # Deep Compression, Fig. 2: nonzeros at 1, 4 and 15 of 16; the gap 4 -> 15 overflows 3 bits
    # (gaps up to 8), so a filler zero goes in at 12 and 15 follows 3 later.
    row = torch.zeros(1, 16)
    row[0, [1, 4, 15]] = 1.0
    assert relative_fillers(row, bits=3) == 1
    assert relative_fillers(row, bits=4) == 0
    # 4 entries x (32 + 3) bits = 140 bits -> 18 bytes, + 2 row pointers
    assert layer_bytes(row, bits=3)["csr_relative"] == 18 + 8
    assert layer_bytes(row)["csr_relative"] == 3 * 6 + 8  # 16 bits: no filler


def test_fillers_restart_on_each_row():
    m = torch.zeros(2, 65540)
    m[0, 0] = m[1, 65530] = 1.0  # the gap across the row boundary would overflow; within row 1 it is 65531
    assert relative_fillers(m) == 0


def two_layer_report() -> dict:
    conv = torch.zeros(2, 1, 2, 2)
    conv[1, 0, 1, 1] = 3.0  # 1 nonzero: dense 32, CSR 8 + 12, relative 6 + 12, bitmask 1 + 4
    weights = {"fc.weight": SMALL, "fc.bias": torch.ones(2), "conv.weight": conv, "conv.bias": torch.ones(2)}
    return storage_report(weights, ["fc", "conv"])


def test_the_report_counts_prunable_weights_only_and_sums_the_layers():
    report = two_layer_report()
    assert (report["weights"], report["nonzero_weights"], report["weight_compression"]) == (16, 4, 4.0)
    assert {f: d["bytes"] for f, d in report["formats"].items()} == {"dense": 64, "csr": 56, "csr_relative": 48,
                                                                      "bitmask": 18}
    assert report["formats"]["csr"]["compression"] == 64 / 56
    assert report["formats"]["bitmask"]["compression"] == 64 / 18
    assert report["formats"]["csr_relative"]["fillers"] == 0 and report["formats"]["csr_relative"]["index_bits"] == 16
    assert report["per_layer"]["conv"]["csr"] == 20


def test_table_md_shows_bytes_and_both_compressions(tmp_path):
    storage = {**two_layer_report(), "export_files": {"bytes": {"model.onnx": 1234}, "holds": "x"}}
    summary = {"experiment": "x", "data": "mnist", "seed": 0, "split_seed": 0, "compression": 4.0,
               "dense_acc": 0.9, "final_acc": 0.9, "per_layer": {"fc": {"total": 8, "nonzero": 3, "kept": 0.375}},
               "storage": storage}
    write_table(tmp_path / "table.md", summary)
    table = (tmp_path / "table.md").read_text()
    assert "| dense fp32 | 64 | 1.00x | - |" in table
    assert "| CSR, int32 indices | 56 | 1.14x | 4.00x |" in table
    assert "| CSR, 16-bit relative indices (Han) | 48 | 1.33x | 4.00x |" in table
    assert "| bitmask + values | 18 | 3.56x | 4.00x |" in table
    assert "biases excluded" in table and "model.onnx 1,234 bytes" in table
