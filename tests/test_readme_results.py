"""admm_pruning.analysis.readme: README's results block is rebuilt from the summaries on disk only."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admm_pruning.analysis import readme as readme_results


def _summary(path: Path, **fields) -> None:
    base = {"experiment": "lenet5_admm_71x", "data": "mnist10k", "pruner": "admm", "model": "lenet5", "seed": 0,
            "split_seed": 0, "dense_acc": 0.979, "final_acc": 0.9817, "compression": 71.157,
            "target_compression": None, "stage_seconds": {"pretrain": 46.2, "admm": 329.4, "retrain": 46.0},
            "stage_cached": {"pretrain": False, "admm": False, "retrain": False}, "wall_seconds": 421.3,
            "paper": {"compression": 71.2, "top1": 0.992}, "per_layer": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**base, **fields}))


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    results = tmp_path / "results"
    _summary(results / "lenet5_admm_71x" / "mnist10k" / "seed0" / "summary.json")
    _summary(results / "lenet5_admm_structured" / "mnist10k" / "seed0" / "summary.json",
             experiment="lenet5_admm_structured", config={"pretrain": {"epochs": 18}}, pruning_epochs=30.0,
             retrain_epochs=18,
             compression=36.8, wall_seconds=1.2, stage_cached={"pretrain": True, "admm": True, "retrain": True},
             provenance={"gpu": None, "threads": 2},
             paper={"source": "no LeNet-5 figure"})
    # a tuned comparison on full MNIST: admm - han = +0.20 pts on both seeds at 71.2x
    for seed, (admm, han) in enumerate([(0.9912, 0.9892), (0.9915, 0.9895)]):
        for pruner, acc in (("admm", admm), ("han", han)):
            _summary(results / "lenet5_compare_mnist" / "runs" / "b24" / f"{pruner}_x71.2_seed{seed}" / "summary.json",
                     experiment="lenet5_compare_mnist", data="mnist", pruner=pruner, seed=seed, dense_acc=0.991,
                     final_acc=acc, compression=71.2, target_compression=71.2, budget_epochs=24.0,
                     dense_val_acc=0.99, final_val_acc=acc)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n\n{readme_results.START}\nstale 1.23x\n{readme_results.END}\n\nafter\n")
    return readme, results


def test_block_is_rebuilt_from_the_summaries_and_the_rest_is_untouched(tree):
    readme, results = tree
    readme_results.main(["--readme", str(readme), "--results", str(results)])
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n\n") and text.endswith("\n\nafter\n")
    assert "stale 1.23x" not in text
    row = next(line for line in text.splitlines() if line.startswith("| [lenet5_admm_71x]"))
    assert "(results/lenet5_admm_71x/mnist10k/seed0/table.md)" in row
    assert "| 97.90% | 98.17% | +0.27 pts | 71.16x | 71.2x | 99.20% | - | - | 46 / 329 / 46 | 421 |" in row
    assert "| mnist10k (stand-in: 7k / 3k) |" in row
    reused = next(line for line in text.splitlines() if line.startswith("| [lenet5_admm_structured]"))
    assert reused.endswith("| 36.80x | - | - | 18 + 30 + 18 | CPU, 2 threads | 46 / 329 / 46 | 1 (stages reused) |")

    verdict = next(line for line in text.splitlines() if line.startswith("| ADMM vs Han (admm - han) |"))
    assert "| lenet5 | mnist | 24 epochs | 71.2x | **admm better** | +0.20 pts (n=2" in verdict
    assert "[lenet5_compare_mnist](results/lenet5_compare_mnist/report.md) |" in verdict
    assert "[results/verdict.md](results/verdict.md)" in text


def test_full_mnist_rows_come_first_marked_with_their_protocol_and_machine(tree):
    readme, results = tree
    _summary(results / "lenet5_admm_71x" / "mnist" / "seed1" / "summary.json", data="mnist", seed=1,
             provenance={"gpu": "NVIDIA H100 80GB HBM3", "threads": 16})
    readme_results.main(["--readme", str(readme), "--results", str(results)])
    rows = [line for line in readme.read_text().splitlines() if line.startswith("| [")]
    assert rows[0].startswith("| [lenet5_admm_71x](results/lenet5_admm_71x/mnist/seed1/table.md) | "
                              "mnist (papers' protocol: 55k / 5k / 10k test) | 1 |")
    assert "| H100 80GB HBM3 |" in rows[0] and all("(stand-in" in r for r in rows[1:])
    _summary(results / "lenet5_admm_40x" / "mnist" / "seed0" / "summary.json", data="mnist",
             experiment="lenet5_admm_40x", provenance={"gpu": None, "cpu": "Intel(R) Xeon(R) Processor", "threads": 2})
    readme_results.main(["--readme", str(readme), "--results", str(results)])
    assert "| Intel Xeon, 2 threads |" in readme.read_text()  # the CPU model tells machines apart


def test_a_changed_summary_changes_the_readme(tree):
    readme, results = tree
    _summary(results / "lenet5_admm_71x" / "mnist10k" / "seed0" / "summary.json", final_acc=0.9700, compression=80.0)
    readme_results.main(["--readme", str(readme), "--results", str(results)])
    assert "| 97.90% | 97.00% | -0.90 pts | 80.00x |" in readme.read_text()


def test_a_readme_without_the_markers_is_refused(tmp_path, tree):
    _, results = tree
    bare = tmp_path / "BARE.md"
    bare.write_text("# no block here\n")
    with pytest.raises(SystemExit, match="results:start"):
        readme_results.main(["--readme", str(bare), "--results", str(results)])
    assert bare.read_text() == "# no block here\n"


def test_a_variant_run_is_neither_a_readme_row_nor_a_study_point(tree):
    """A run with other settings than its experiment's (seed<k>+<overrides>, summary 'variant')
    stays out of the experiment's row and out of a study's points."""
    from admm_pruning.analysis.runs import load_runs

    readme, results = tree
    _summary(results / "lenet5_admm_71x" / "mnist10k" / "seed0+pruner.rho=1e-3" / "summary.json",
             final_acc=0.5, variant=["pruner.rho=1e-3"])
    _summary(results / "lenet5_compare_mnist" / "runs" / "b24" / "admm_x71.2_seed0+pretrain.epochs=1" /
             "summary.json", experiment="lenet5_compare_mnist", data="mnist", variant=["pretrain.epochs=1"])
    readme_results.main(["--readme", str(readme), "--results", str(results)])
    assert "seed0+pruner.rho" not in readme.read_text() and "| 50.00% |" not in readme.read_text()
    assert not any(r.get("variant") for r in load_runs(results / "lenet5_compare_mnist" / "runs"))
