"""results/verdict.md from study folders: a row per claim, network, budget and target, paired by
seed, full MNIST first, each linked to its study."""

from __future__ import annotations

import json
from pathlib import Path

from admm_pruning.analysis.verdict import readme_table, render

DENSE = {0: 0.990, 1: 0.991, 2: 0.989}


def _study(root: Path, name: str, data: str, finals: dict[tuple[str, float], list[float]]) -> None:
    for (pruner, target), accs in finals.items():
        for seed, acc in zip(DENSE, accs, strict=True):
            run = {"pruner": pruner, "model": "lenet5", "data": data, "seed": seed, "target_compression": target,
                   "compression": target, "budget_epochs": 24.0, "dense_acc": DENSE[seed], "final_acc": acc,
                   "dense_val_acc": DENSE[seed], "final_val_acc": acc,
                   "stage_dirs": {"pretrain": f"/a/stages/pretrain-{data}{seed}"}}
            folder = root / name / "runs" / "b24" / f"{pruner}_x{target:g}_seed{seed}"
            folder.mkdir(parents=True)
            (folder / "summary.json").write_text(json.dumps(run))


def test_each_claim_gets_a_paired_verdict_per_target_with_its_study(tmp_path):
    full = {("admm", 71.2): [0.9905, 0.9915, 0.9895], ("han", 71.2): [0.9875, 0.9885, 0.9865],
            ("oneshot", 71.2): [0.980, 0.990, 0.985], ("admm", 256.0): [0.97, 0.975, 0.972],
            ("han", 256.0): [0.969, 0.976, 0.970]}
    _study(tmp_path, "lenet5_compare_mnist", "mnist", full)
    _study(tmp_path, "lenet5_mnist10k_compare", "mnist10k", {("admm", 16.0): [0.98, 0.98, 0.98],
                                                             ("han", 16.0): [0.98, 0.98, 0.98]})
    text = render(tmp_path, tmp_path)
    rows = [line for line in text.splitlines() if line.startswith("| lenet5 |")]
    # admm - han = +0.30 pts on every seed at 71.2x: better, also after Holm over 71.2x and 256x
    assert rows[0].startswith("| lenet5 | mnist | 24 epochs | 71.2x | **admm better** | +0.30 pts (n=3")
    assert rows[0].endswith("[lenet5_compare_mnist](lenet5_compare_mnist/report.md) |")
    assert rows[1].startswith("| lenet5 | mnist | 24 epochs | 256x | **undecided (n=")
    assert rows[2].startswith("| lenet5 | mnist10k | 24 epochs | 16x | **equivalent within ±0.1 pt** | +0.00 pts")
    # one-shot ran only at 71.2x; the no-loss claim reads admm at the paper's 71.2x only
    assert "| lenet5 | mnist | 24 epochs | 71.2x | **undecided (n=" in text.split("one-shot magnitude")[1]
    no_loss = text.split("loses no accuracy")[1].split("## Frontier")[0]
    assert no_loss.count("| lenet5 |") == 1 and "| 71.2x | **above dense, by less than 0.1 pt** | +0.05 pts" in no_loss
    assert "- lenet5, mnist, 24 epochs: admm 256x" not in text and "admm 71.2x (test change +0.05 pts" in text
    table = readme_table(tmp_path, tmp_path)
    assert "mnist10k" not in table and table.count("| ADMM vs Han (admm - han) | lenet5 | mnist |") == 2
    # the sentence read off the rows: counts per outcome, rows named when there are at most two
    assert table.splitlines()[-1] == (
        "Read from these rows: ADMM vs Han (2 rows): admm better at 1 (lenet5 71.2x, 24 epochs), undecided at 1 "
        "(lenet5 256x, 24 epochs); ADMM vs one-shot (1 row): undecided at 1 (lenet5 71.2x, 24 epochs); ADMM no loss "
        "at the paper's compression (1 row): above dense, by less than 0.1 pt at 1 (lenet5 71.2x, 24 epochs).")
