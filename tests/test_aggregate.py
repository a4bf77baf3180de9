"""Tests for admm_pruning.analysis (aggregate CLI, selection, intervals, verdicts) on synthetic summaries
whose answers are known by hand.

Main fixture (dense 99% on test and validation, validation = test per run, so the thresholds are
98.9 / 98.5 / 98.0 % on either split):
- admm: targets 10/20/40, measured compressions average 10.1 / 20.2 / 40.4, mean finals 98.95 / 98.70 / 98.20 %
  -> best within 0.1 / 0.5 / 1.0 pts: 10.10x / 20.20x / 40.40x.
- han: same targets, measured 10 / 20 / 40, mean finals 98.80 / 98.40 / 97.50 % (no spread)
  -> best: none / 10.00x / 20.00x.
At 20x admm's interval (98.70 ± 12.706 * 0.0283 / sqrt 2 = 98.45 to 98.95 %) lies above han's 98.40 %, so
admm dominates at 0.5 pts (20.2 / 10 = 2.02x), backed; the per-layer table uses target 40 (closest to 32).
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from admm_pruning.analysis import aggregate as aggregate_mod
from admm_pruning.analysis.compare import target_verdict
from admm_pruning.analysis.paper import paper_section
from admm_pruning.analysis.runs import Point, study
from admm_pruning.analysis.stats import estimate, t975

# pruner -> target -> per-seed (measured compression, final_acc, kept fc1, kept fc2)
FIXTURE = {
    "admm": {10: [(10.0, 0.9896, 0.20, 0.50), (10.2, 0.9894, 0.20, 0.50)],
             20: [(20.0, 0.9872, 0.10, 0.30), (20.4, 0.9868, 0.10, 0.30)],
             40: [(40.0, 0.9825, 0.02, 0.10), (40.8, 0.9815, 0.03, 0.12)]},
    "han": {10: [(10.0, 0.9880, 0.15, 0.55), (10.0, 0.9880, 0.15, 0.55)],
            20: [(20.0, 0.9840, 0.08, 0.35), (20.0, 0.9840, 0.08, 0.35)],
            40: [(40.0, 0.9750, 0.03, 0.08), (40.0, 0.9750, 0.03, 0.08)]},
}
PAPER = [{"label": "LeNet-5 71.2x", "compression": 71.2, "top1": 0.9912},
         {"label": "unreported top-1", "compression": 21.0, "top1": None}]
LEGACY = "test (earlier code recorded no validation accuracy)"


def _put(root: Path, name: str, summary: dict) -> None:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "summary.json").write_text(json.dumps(summary))


def _write_results(root: Path) -> None:
    """The main fixture, with validation accuracies equal to the test ones."""
    for pruner, targets in FIXTURE.items():
        for target, seeds in targets.items():
            for seed, (comp, final, fc1, fc2) in enumerate(seeds):
                summary = {"experiment": f"lenet_{pruner}_{target}", "pruner": pruner, "model": "lenet300",
                           "data": "mnist", "seed": seed, "split_seed": 0, "dense_acc": 0.99, "final_acc": final,
                           "compression": comp, "target_compression": float(target), "budget_epochs": 5.0,
                           "wall_seconds": 1.0, "dense_val_acc": 0.99, "final_val_acc": final,
                           "per_layer": {"fc1": {"total": 1000, "nonzero": int(1000 * fc1), "kept": fc1},
                                         "fc2": {"total": 100, "nonzero": int(100 * fc2), "kept": fc2}}}
                _put(root, f"{pruner}_t{target}/seed{seed}", summary)


# Validation and test disagree. Dense: test 99%, validation 98%. Per target: (val per seed, test per seed).
# On validation every target is within 0.5 pts of 98% -> 40x; on test only 10x is within 0.5 pts of 99%.
DISAGREE = {10: ((0.9796, 0.9796), (0.9890, 0.9890)),
            20: ((0.9780, 0.9780), (0.9840, 0.9840)),
            40: ((0.9770, 0.9770), (0.9690, 0.9710))}


def _write_disagreeing(root: Path, val: bool | None = True) -> None:
    """val=True: validation keys present; False: absent (earlier code); None: present but null (no val split)."""
    for target, (vals, tests) in DISAGREE.items():
        for seed in (0, 1):
            summary = {"experiment": "x", "pruner": "admm", "model": "lenet5", "data": "mnist10k", "seed": seed,
                       "dense_acc": 0.99, "final_acc": tests[seed], "compression": float(target),
                       "target_compression": float(target), "per_layer": {}}
            if val is not False:
                summary |= {"dense_val_acc": 0.98 if val else None, "final_val_acc": vals[seed] if val else None}
            _put(root, f"admm_t{target}_s{seed}", summary)


@pytest.fixture
def aggregated(tmp_path: Path) -> tuple[dict, Path]:
    results, out = tmp_path / "results", tmp_path / "out"
    _write_results(results)
    return aggregate_mod.aggregate(results, out, PAPER), out


def _csv(path: Path) -> list[dict]:
    return list(csv.DictReader(path.read_text().splitlines()))


def _compressions(best: dict) -> dict:
    return {tol: (None if p is None else p.compression) for tol, p in best.items()}


def test_curve_csv(aggregated: tuple[dict, Path]) -> None:
    _, out = aggregated
    rows = list(csv.reader((out / "curve.csv").read_text().splitlines()))
    assert rows[0] == ["experiment", "pruner", "model", "data", "seed", "target_compression", "compression",
                       "dense_acc", "final_acc", "acc_drop_pts", "dense_val_acc", "final_val_acc", "selected_on",
                       "operating_point_within_pts", "budget_epochs", "summary_path"]
    assert len(rows) == 1 + 12 and all(len(r) == 16 for r in rows)
    by_path = {r["summary_path"]: r for r in _csv(out / "curve.csv")}
    row = by_path["admm_t10/seed0/summary.json"]
    assert row["acc_drop_pts"] == "0.04"  # 100 * (0.99 - 0.9896)
    assert row["selected_on"] == "validation" and row["operating_point_within_pts"] == "0.1"
    assert by_path["admm_t40/seed1/summary.json"]["operating_point_within_pts"] == "1.0"
    assert by_path["han_t20/seed0/summary.json"]["operating_point_within_pts"] == "1.0"
    assert by_path["han_t40/seed0/summary.json"]["operating_point_within_pts"] == ""


def test_plot_is_png(aggregated: tuple[dict, Path]) -> None:
    assert (aggregated[1] / "accuracy_vs_compression.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_returned_dict(aggregated: tuple[dict, Path]) -> None:
    result, _ = aggregated
    assert (result["runs"], result["pruners"], result["basis"].label) == (12, ["admm", "han"], "validation")
    assert _compressions(result["best"]["admm"]) == pytest.approx({0.1: 10.1, 0.5: 20.2, 1.0: 40.4})
    assert _compressions(result["best"]["han"]) == {0.1: None, 0.5: pytest.approx(10.0), 1.0: pytest.approx(20.0)}
    assert result["dominates_at_0_5"] is True


def test_report_tolerance_and_dominance(aggregated: tuple[dict, Path]) -> None:
    report = (aggregated[1] / "report.md").read_text()
    assert "12 runs, pruners admm, han, seeds 0, 1" in report
    assert "Selected on: validation." in report and "issue 11" not in report
    assert "| admm | 0.5 pts | 20.20x | 98.70% | 98.70 ± 0.03% | 2 | 98.45 to 98.95% |" in report
    assert "| han | 0.1 pts | none | - | - | - | - |" in report
    assert "| han | 1.0 pts | 20.00x | 98.40% | 98.40 ± 0.00% | 2 | 98.40 to 98.40% |" in report
    assert "## Dominance at 0.5 points" in report and "`admm` dominates" in report
    assert "vs `han`: 20.20x / 10.00x = 2.02x; at 20x `admm` 98.70 ± 0.03% (n=2, CI 98.45 to 98.95)" in report
    # 40x alone: d = 0.75, 0.65 pts, t = 14 on 1 df, p = 0.045; beside 10x and 20x Holm takes the win away
    assert ("| 40x | undecided between admm, han | 98.20 ± 0.07% (n=2, CI 97.56 to 98.84) | 97.50 ± 0.00% (n=2, "
            "CI 97.50 to 97.50) |" in report)


def test_report_per_layer_and_paper(aggregated: tuple[dict, Path]) -> None:
    report = (aggregated[1] / "report.md").read_text()
    section = report.split("## Per-layer kept fractions at matched compression")[1].split("## Why the curves")[0]
    assert "target compression 40x" in section and "| layer | admm | han |" in section
    assert "| fc1 | 2.50 | 3.00 |" in section and "| fc2 | 11.00 | 8.00 |" in section
    paper = report.split("## Paper reference")[1]
    assert "paper: LeNet-5 71.2x" in paper and "99.12%" in paper
    assert "paper: unreported top-1" in paper and "not reported" in paper


def test_dominance_verdict_flips_when_han_wins(tmp_path: Path) -> None:
    """Guards against a hard-coded verdict: make han lossless at 40x so it beats admm at 0.5 pts."""
    results = tmp_path / "results"
    _write_results(results)
    for seed in (0, 1):
        path = results / "han_t40" / f"seed{seed}" / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "final_acc": 0.99, "final_val_acc": 0.99}))
    result = aggregate_mod.aggregate(results, tmp_path / "out")
    assert result["dominates_at_0_5"] is False
    report = (tmp_path / "out" / "report.md").read_text()
    assert "`admm` does not dominate: it is beaten by `han`." in report
    assert "vs `han`: 20.20x / 40.00x = 0.51x; at 40x `han`" in report


def test_operating_point_follows_validation_and_reports_test(tmp_path: Path) -> None:
    """(a) Validation picks 40x (97.70% >= 98% - 0.5), although test would pick 10x; the accuracy reported
    for the 40x point is its test mean 97.00 ± 0.14% (n=2), not its validation 97.70%."""
    _write_disagreeing(tmp_path / "r")
    result = aggregate_mod.aggregate(tmp_path / "r", tmp_path / "o")
    best = result["best"]["admm"]
    assert result["basis"].label == "validation"
    assert best[0.1].key == 10.0 and best[0.5].key == 40.0 and best[1.0].key == 40.0
    assert best[0.5].test.mean == pytest.approx(0.970) and best[0.5].test.n == 2
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| admm | 0.5 pts | 40.00x | 97.70% | 97.00 ± 0.14% | 2 | 95.73 to 98.27% |" in report
    rows = {r["summary_path"]: r for r in _csv(tmp_path / "o" / "curve.csv")}
    assert rows["admm_t40_s0/summary.json"]["operating_point_within_pts"] == "0.5;1.0"
    assert rows["admm_t40_s0/summary.json"]["final_val_acc"] == "0.977"
    assert rows["admm_t10_s0/summary.json"]["operating_point_within_pts"] == "0.1"


def test_old_summaries_are_selected_on_test_and_labelled(tmp_path: Path) -> None:
    """(d) Without validation keys (earlier code) the same runs are chosen on test (10x at 0.5 pts, not 40x),
    and report, curve.csv and the returned basis all say so; the report carries the issue-11 note."""
    _write_disagreeing(tmp_path / "r", val=False)
    result = aggregate_mod.aggregate(tmp_path / "r", tmp_path / "o")
    assert result["basis"].label == LEGACY
    assert result["best"]["admm"][0.5].key == 10.0 and result["best"]["admm"][1.0].key == 20.0
    report = (tmp_path / "o" / "report.md").read_text()
    assert f"Selected on: {LEGACY}." in report
    assert "before the correctness fixes of issue 11" in report and "will be redone" in report
    assert "| admm | 0.5 pts | 10.00x | 98.90% | 98.90 ± 0.00% | 2 | 98.90 to 98.90% |" in report
    assert {r["selected_on"] for r in _csv(tmp_path / "o" / "curve.csv")} == {LEGACY}


def test_null_validation_falls_back_to_test_with_its_own_reason(tmp_path: Path) -> None:
    """Keys present but null (a data set without validation split): test basis, not the earlier-code note."""
    _write_disagreeing(tmp_path / "r", val=None)
    result = aggregate_mod.aggregate(tmp_path / "r", tmp_path / "o")
    assert result["basis"].label == "test (some runs have no validation split)"
    assert "issue 11" not in (tmp_path / "o" / "report.md").read_text()


def test_interval_of_two_seeds_by_hand() -> None:
    """(b) n=2: sd = 0.01 / sqrt 2, half width = 12.7062 * sd / sqrt 2 = 12.7062 * 0.005 = 0.063531."""
    est = estimate([0.97, 0.98])
    assert est.mean == pytest.approx(0.975) and est.sd == pytest.approx(0.01 / math.sqrt(2)) and est.n == 2
    assert est.interval == pytest.approx((0.975 - 0.063531, 0.975 + 0.063531), abs=1e-6)
    assert est.cell() == "97.50 ± 0.71% (n=2, CI 91.15 to 103.85)"
    assert estimate([0.97]).interval is None and estimate([0.97]).ci_pct() == "no interval (n=1)"
    five = estimate([0.1, 0.2, 0.3, 0.4, 0.5])  # sd = sqrt(0.025), df 4 -> t = 2.7764
    assert five.half_width == pytest.approx(2.7764 * math.sqrt(0.025) / math.sqrt(5), rel=1e-4)
    assert t975(30) == pytest.approx(2.0423, abs=1e-4) and t975(10**6) == pytest.approx(1.95997, abs=1e-4)


def test_a_target_is_won_only_by_a_paired_difference() -> None:
    """(c) Runs of one seed share its dense model: a - b = 4.0 pts on both seeds (better); a - c =
    2.0 and 1.1 pts (t = 3.44 on 1 df, p = 0.18: undecided), though a's mean is the highest."""
    accs = {"a": (0.990, 0.991), "b": (0.950, 0.951), "c": (0.97, 0.98)}
    runs = {name: [{"final_acc": acc, "compression": 8.0, "seed": seed, "dense_acc": 0.99}
                   for seed, acc in enumerate(a)] for name, a in accs.items()}
    pts = {name: Point(name, 8.0, r) for name, r in runs.items()}
    assert target_verdict({"a": pts["a"], "b": pts["b"]}) == "a wins"
    assert target_verdict(pts) == "undecided between a, c; a above b"


def test_overlapping_best_points_make_dominance_and_the_papers_gap_a_tie(tmp_path: Path) -> None:
    """(c) Same compressions as the main fixture, but admm's 20x seeds spread (99.00 / 98.40 %): the
    paired difference to han's 98.40 % (+0.60 and 0.00 pts) is undecided, so the higher compression
    is not backed and the paper's gap (2x, otherwise matched by our 2.02x) is not reproduced; with
    the spread removed it is."""
    claims = [{"label": "ADMM 20x", "pruner": "admm", "compression": 20.0, "top1": None, "no_loss": True},
              {"label": "Han 10x", "pruner": "han", "compression": 10.0, "top1": None, "no_loss": True}]
    _write_results(tmp_path / "sep")
    backed = aggregate_mod.aggregate(tmp_path / "sep", tmp_path / "o1", claims)
    assert backed["dominates_at_0_5"] is True
    assert "the paper's gap is reproduced here (at 20x `admm`" in (tmp_path / "o1" / "report.md").read_text()
    _write_results(tmp_path / "noisy")
    for seed, acc in ((0, 0.9900), (1, 0.9840)):
        path = tmp_path / "noisy" / "admm_t20" / f"seed{seed}" / "summary.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "final_acc": acc, "final_val_acc": acc}))
    result = aggregate_mod.aggregate(tmp_path / "noisy", tmp_path / "o2", claims)
    assert result["best"]["admm"][0.5].key == 20.0 and result["dominates_at_0_5"] is False
    report = (tmp_path / "o2" / "report.md").read_text()
    assert "`admm` does not dominate: it is undecided against `han`." in report
    assert "difference +0.30 pts (n=2, 95% CI -3.51 to +4.11): undecided: no difference shown at 5%" in report
    assert "the paper's gap is NOT reproduced here (at 20x `admm`" in report
    assert "dominates:" not in report and " wins" not in report.split("## Paper reference")[1]


def test_cli_empty_folder(tmp_path: Path) -> None:
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "admm_pruning.analysis.aggregate", str(empty), "--out", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("error:") and len(proc.stderr.strip().splitlines()) == 1
    assert not out.exists() and list(empty.iterdir()) == []


def _diag_runs(root: Path) -> None:
    """admm vs oneshot at 16x, 2 seeds, with post-prune accuracies known by hand."""
    for pruner, pruned, final, retrain in (("admm", (0.60, 0.70), (0.97, 0.97), 12), ("oneshot", (0.50, 0.50),
                                                                                       (0.96, 0.98), 24)):
        for seed in (0, 1):
            s = {"experiment": "x", "pruner": pruner, "model": "lenet5", "data": "mnist10k", "seed": seed,
                 "dense_acc": 0.98, "final_acc": final[seed], "pruned_acc": pruned[seed], "compression": 16.0,
                 "target_compression": 16.0, "budget_epochs": 24.0, "retrain_epochs": retrain,
                 "per_layer": {"fc1": {"total": 100, "nonzero": 6, "kept": 0.06}}}
            _put(root, f"{pruner}{seed}", s)


def test_report_explains_the_gap_from_post_prune_accuracy(tmp_path: Path) -> None:
    _diag_runs(tmp_path / "r")
    aggregate_mod.aggregate(tmp_path / "r", tmp_path / "o")
    report = (tmp_path / "o" / "report.md").read_text()
    assert "| 16x | 65.00% | 50.00% |" in report
    assert ("At 16x, ADMM's weights score 65.00% right after the hard prune against 50.00% for one-shot "
            "magnitude pruning of the dense weights (+15.00 pts), and 97.00% against 97.00% after retraining "
            "(+0.00 pts), on a budget of 24 epochs (retraining epochs: admm 12, oneshot 24). After retraining, "
            "the difference is +0.00 pts (n=2, 95% CI -12.71 to +12.71): undecided: no difference shown at 5%.") \
        in report


def test_study_goes_to_wandb_as_a_table_and_a_log_axis_chart(tmp_path: Path, monkeypatch) -> None:
    """The report run (offline, the study's group) holds the curve as a table, with log2 of each
    compression, and the aggregator's log2-axis figure as an image, read back from its files."""
    import wandb

    from test_wandb import offline_runs

    _write_results(tmp_path / "r")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    result = aggregate_mod.aggregate(tmp_path / "r", tmp_path / "o")
    aggregate_mod.log_to_wandb(result["table_runs"], "sweep-x", "title", result["paths"]["plot"])
    wandb.teardown()
    (run,) = offline_runs(tmp_path / "artifacts" / "wandb").values()
    assert (run.run.display_name, run.run.run_group, run.run.job_type) == ("sweep-x-report", "sweep-x", "report")
    assert run.config["runs"] == 12
    assert {"curve", "accuracy_vs_compression_table", "accuracy_vs_compression_plot"} <= set(run.history)
    chart = run.config["_wandb/visualize/accuracy_vs_compression"]["panel_config"]
    assert chart["fieldSettings"] == {"x": "log2_compression", "y": "final_acc", "stroke": "pruner"}
    media = run.folder / "files" / "media"
    (table,) = (media / "table").glob("curve_*.table.json")
    curve = json.loads(table.read_text())
    rows = [dict(zip(curve["columns"], row, strict=True)) for row in curve["data"]]
    assert len(rows) == 12 and {r["pruner"] for r in rows} == {"admm", "han"}
    assert all(r["log2_compression"] == pytest.approx(math.log2(r["compression"])) for r in rows)
    (image,) = (media / "images").glob("accuracy_vs_compression_plot_*.png")
    assert image.read_bytes() == result["paths"]["plot"].read_bytes()


def test_a_broken_wandb_only_warns(tmp_path: Path, monkeypatch, capsys) -> None:
    """`aggregate --wandb` (the sweep, report and progressive make targets) succeeds, with its
    files, and warns when W&B cannot start."""
    import wandb

    def broken(*args, **kwargs):
        raise RuntimeError("W&B is down (simulated)")

    _diag_runs(tmp_path / "r")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setattr(wandb, "init", broken)
    assert aggregate_mod.main([str(tmp_path / "r"), "--out", str(tmp_path / "o"), "--wandb"]) == 0
    err = capsys.readouterr().err
    assert "warning: W&B unavailable" in err and "W&B is down (simulated)" in err
    assert (tmp_path / "o" / "report.md").is_file() and (tmp_path / "o" / "curve.csv").is_file()


def test_plot_has_a_log2_compression_axis(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    closed = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (closed.append(fig), close(fig)))
    _write_results(tmp_path / "r")
    aggregate_mod.aggregate(tmp_path / "r", tmp_path / "o")
    (ax,) = closed[-1].axes
    assert ax.get_xscale() == "log" and ax.xaxis.get_transform().base == 2


def test_report_sets_our_best_beside_the_papers_claim(tmp_path: Path) -> None:
    _write_results(tmp_path / "r")
    claims = [{"label": "ADMM 40x", "pruner": "admm", "compression": 40.0, "top1": None, "no_loss": True},
              {"label": "Han 12x", "pruner": "han", "compression": 12.0, "top1": None, "no_loss": True}]
    aggregate_mod.aggregate(tmp_path / "r", tmp_path / "o", claims)
    report = (tmp_path / "o" / "report.md").read_text()
    assert "selected on validation;" in report
    assert ("- `admm`: ours 20.20x, below the paper's 40.0x (0.51 of it); our test top-1 there: "
            "98.70 ± 0.03% (n=2).") in report
    assert "- `han`: ours 10.00x, below the paper's 12.0x (0.83 of it);" in report
    assert "the paper's gap is NOT reproduced here (our ratio is below 90% of the paper's; at 20x `admm`" in report


def _at(compression: float) -> list[dict]:
    return [{"pruner": "admm", "seed": s, "dense_acc": 0.99, "final_acc": 0.99, "dense_val_acc": 0.99,
             "final_val_acc": 0.99, "compression": compression, "target_compression": None} for s in (0, 1)]


def test_the_papers_one_decimal_figure_is_met_by_the_same_kept_count() -> None:
    """71.157x is the paper's "71.2x" (430,500 / 6,050 weights): at the paper's precision it is reached."""
    claim = [{"label": "ADMM 71.2x", "pruner": "admm", "compression": 71.2, "top1": 0.992, "no_loss": True}]
    same = paper_section(claim, study(_at(71.157)))
    assert "- `admm`: ours 71.16x, at or above the paper's 71.2x (1.00 of it);" in same[-1]
    short = paper_section(claim, study(_at(71.1)))
    assert "- `admm`: ours 71.10x, below the paper's 71.2x (1.00 of it);" in short[-1]
