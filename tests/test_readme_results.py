"""benchmarks/readme_results.py: README's results block is rebuilt from the summaries on disk only."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("readme_results", ROOT / "benchmarks" / "readme_results.py")
readme_results = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = readme_results
_spec.loader.exec_module(readme_results)


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
    _summary(results / "lenet5_admm_71x" / "mnist10k" / "summary.json")
    _summary(results / "lenet5_admm_structured" / "mnist10k" / "summary.json", experiment="lenet5_admm_structured",
             compression=36.8, wall_seconds=1.2, stage_cached={"pretrain": True, "admm": True, "retrain": True},
             paper={"source": "no LeNet-5 figure"})
    # a progressive folder: progressive 60x within 0.5 pts of the 95.70% dense mean, one-shot 60x not
    for seed, (prog, one) in enumerate([(0.9563, 0.9500), (0.9580, 0.9510)]):
        for pruner, acc in (("admm_progressive", prog), ("admm", one)):
            _summary(results / "lenet300_mnist10k_progressive" / "runs" / f"{pruner}_x60_seed{seed}" / "summary.json",
                     experiment="lenet300_mnist10k_progressive", model="lenet300", pruner=pruner, seed=seed,
                     dense_acc=0.957, final_acc=acc, compression=60.0, target_compression=60.0)
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
    assert "(results/lenet5_admm_71x/mnist10k/table.md)" in row
    assert "| 97.90% | 98.17% | +0.27 pts | 71.16x | 71.2x | 99.20% | 46 / 329 / 46 | 421 |" in row
    reused = next(line for line in text.splitlines() if line.startswith("| [lenet5_admm_structured]"))
    assert reused.endswith("| 36.80x | - | - | 46 / 329 / 46 | 1 (stages reused) |")
    ops = {line.split(" | ")[2]: line for line in text.splitlines() if line.startswith("| lenet300 | mnist10k |")}
    assert "| 60.0x | 60.0x |" in ops["admm_progressive"]
    assert "| none | 60.0x |" in ops["admm"]  # 95.05% mean: 0.65 pts below dense


def test_a_changed_summary_changes_the_readme(tree):
    readme, results = tree
    _summary(results / "lenet5_admm_71x" / "mnist10k" / "summary.json", final_acc=0.9700, compression=80.0)
    readme_results.main(["--readme", str(readme), "--results", str(results)])
    assert "| 97.90% | 97.00% | -0.90 pts | 80.00x |" in readme.read_text()


def test_a_readme_without_the_markers_is_refused(tmp_path, tree):
    _, results = tree
    bare = tmp_path / "BARE.md"
    bare.write_text("# no block here\n")
    with pytest.raises(SystemExit, match="results:start"):
        readme_results.main(["--readme", str(bare), "--results", str(results)])
    assert bare.read_text() == "# no block here\n"
