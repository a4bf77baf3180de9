"""Paper figures live in one file, conf/papers/figures.yaml: experiments point into it, studies and the
speedup benchmark read it, and no experiment file, JSON file or Python dict holds a figure of its own."""

import re
import shutil
import subprocess
from numbers import Number
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from admm_pruning.analysis import aggregate
from admm_pruning.analysis.paper import FIGURES, load_figures, points_for_folder, study_points
from conftest import CONF, ROOT, compose_cfg

EXPERIMENTS = sorted(p.stem for p in (Path(CONF) / "experiment").glob("*.yaml"))
FIGURE_KEYS = {"source", "keep", "compression", "conv_compression", "top1", "top5", "dense_top1", "dense_top5",
               "total_weights", "kept_weights"}


def test_the_figures_file_is_the_one_hydra_loads():
    assert FIGURES == Path(CONF) / "papers" / "figures.yaml"
    cfg = compose_cfg([])
    assert OmegaConf.to_container(cfg.papers, resolve=True) == load_figures()
    assert set(load_figures()) == {"experiments", "studies", "speedup"}


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiments_paper_is_its_entry_in_the_file(experiment):
    """The composed `paper` (what summary.json stores) is the file's entry, as a plain dict."""
    entries = load_figures()["experiments"]
    cfg = compose_cfg([f"experiment={experiment}"])
    if experiment in entries:
        assert OmegaConf.to_container(cfg.paper, resolve=True) == entries[experiment]
        assert entries[experiment]["source"]  # every figure keeps its citation
        assert set(entries[experiment]) <= FIGURE_KEYS
    else:
        assert cfg.get("paper") is None


def test_no_entry_without_its_experiment():
    assert set(load_figures()["experiments"]) <= set(EXPERIMENTS)


def _keys(node, path=()):
    """Every key path of a parsed YAML mapping."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield (*path, k)
            yield from _keys(v, (*path, k))


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_no_experiment_file_holds_a_paper_figure(experiment):
    """An experiment says only `paper: ${papers.experiments.<name>}`; no accuracy, compression, keep
    or source of a paper is written in it (prune.compression and prune.keep are our targets)."""
    raw = yaml.safe_load((Path(CONF) / "experiment" / f"{experiment}.yaml").read_text())
    assert raw.get("paper") in (None, f"${{papers.experiments.{experiment}}}")
    for path in _keys(raw):
        if path[-1] in FIGURE_KEYS:
            assert path in {("prune", "compression"), ("prune", "keep")}, f"{experiment}: {'.'.join(path)}"


def test_no_paper_json_files_remain():
    assert not (Path(CONF) / "paper").exists()
    assert not list(Path(CONF).rglob("*.json"))


@pytest.mark.parametrize("study", ["lenet5", "lenet300", "lenet5_progressive", "lenet300_progressive",
                                   "lenet5_profile", "alexnet"])
def test_study_points_load(study):
    points = study_points(study)
    assert points
    for p in points:
        assert isinstance(p["label"], str) and p["label"]
        assert isinstance(p["compression"], Number) and p["compression"] > 1
        assert p["top1"] is None or 0 < p["top1"] < 1
        assert isinstance(p["no_loss"], bool) and p["pruner"]


def test_study_folders_find_their_points():
    """studies.<model>_<kind> for a progressive or profile folder, else studies.<model>."""
    assert points_for_folder(Path("results/lenet5_mnist10k_progressive")) == study_points("lenet5_progressive")
    assert points_for_folder(Path("results/lenet5_mnist10k_profile")) == study_points("lenet5_profile")
    assert points_for_folder(Path("results/lenet300_mnist10k_sweep")) == study_points("lenet300")
    assert points_for_folder(Path("results/resnet_mnist_sweep")) == []


def test_aggregate_cli_takes_points_by_name(tmp_path, capsys):
    assert aggregate.main([str(tmp_path), "--paper", "no_such_study"]) == 2
    err = capsys.readouterr().err
    assert "no study 'no_such_study'" in err and "lenet5_progressive" in err
    with pytest.raises(SystemExit):  # one source of points at a time
        aggregate.main([str(tmp_path), "--paper", "lenet5", "--paper-json", str(tmp_path / "p.json")])


def test_makefile_names_existing_studies():
    """Every `--paper NAME` of the Makefile is a study of the figures file; `report` derives the name
    from the sweep folders' model."""
    text = (ROOT / "Makefile").read_text()
    recipes = "\n".join(line for line in text.splitlines() if line.startswith("\t"))
    names = set(re.findall(r"--paper (\w+)", recipes))
    assert names and names <= set(load_figures()["studies"])
    assert "--paper-json" not in text and "conf/paper/" not in text
    sweeps = {p.stem.split("_")[0] for p in (Path(CONF) / "experiment").glob("*_sweep.yaml")}
    assert sweeps <= set(load_figures()["studies"])


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_drives_the_study_grids_from_hydra():
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "sweep-lenet5", "DATA=mnist10k"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    assert re.search(r"admm-prune -m experiment=lenet5_sweep data=mnist10k\s*$", out, re.M)
    assert "analysis.aggregate results/lenet5_mnist10k_sweep --paper lenet5" in out
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed", "progressive-lenet300", "DATA=mnist10k",
                          "SEEDS=0,1,2", "PRUNERS=admm_progressive"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout
    assert "experiment=lenet300_progressive data=mnist10k seed=0,1,2 pruner=admm_progressive" in out


def test_speedup_report_reads_its_figures_from_the_file():
    from admm_pruning.analysis import speedup_table

    assert speedup_table.PAPER == load_figures()["speedup"]
    assert speedup_table.PAPER["gpu_speedups"] == [2.6, 3.65] and speedup_table.PAPER["cpu_speedup"] == 10.5
    for path in (ROOT / "benchmarks" / "speedup.py", ROOT / "src" / "admm_pruning" / "analysis" / "speedup_table.py"):
        source = path.read_text()
        assert "10.5" not in source and "13.2" not in source  # no figure written in the code
