"""A study's cost in CPU-hours before it runs: its grids' runs times their epochs, times the CPU
seconds one epoch took in runs already measured on the same model and data.

Usage: python -m admm_pruning.tuning.cost lenet5_compare_tune lenet5_compare --data mnist10k
       [--measured results/lenet5_compare_mnist] [--sec-per-epoch S] [overrides ...]
Every run of a study trains its budget.epochs after the dense model (the equal-budget rule), and
each seed's dense model is trained once and shared.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

CONF = str(Path(__file__).resolve().parents[3] / "conf")


def grid(experiment: str, data: str, overrides: list[str]) -> tuple[list[dict[str, str]], int]:
    """Every point of an experiment's multirun grid (command-line axes replace its own), and its
    dense model's epochs."""
    single = [o for o in overrides if "," not in o.partition("=")[2]]
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("train", [f"experiment={experiment}", f"data={data}", *single], return_hydra_config=True)
    axes = {k: str(v).split(",") for k, v in cfg.hydra.sweeper.params.items()}
    for o in overrides:
        key, _, value = o.partition("=")
        if "," in value or key in axes:
            axes[key] = value.split(",")
    points = [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]
    return points, int(cfg.pretrain.epochs)


def epochs_of(points: list[dict[str, str]], pretrain_epochs: int) -> tuple[int, float]:
    """Runs and epochs: each run its budget, plus each distinct seed's dense model once."""
    seeds = {p["seed"] for p in points}
    return len(points), sum(float(p["budget.epochs"]) for p in points) + pretrain_epochs * len(seeds)


def measured_cpu_seconds_per_epoch(folder: Path) -> tuple[float, int]:
    """Median CPU seconds per retraining epoch (stage seconds x torch threads / epochs) over the
    computed (not reused) retrain stages of the runs under ``folder``, and how many there were."""
    rates = []
    for path in folder.rglob("summary.json"):
        s = json.loads(path.read_text())
        if s.get("stage_cached", {}).get("retrain") or not s.get("retrain_epochs"):
            continue
        threads = (s.get("provenance") or {}).get("threads") or 1
        rates.append(s["stage_seconds"]["retrain"] * threads / s["retrain_epochs"])
    if not rates:
        raise FileNotFoundError(f"no computed retrain stages under {folder} to measure an epoch from")
    return statistics.median(rates), len(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("experiments", nargs="+", help="experiment names, or overrides key=value for every grid")
    parser.add_argument("--data", default="mnist10k")
    parser.add_argument("--measured", type=Path, help="results folder whose runs measure the cost of an epoch")
    parser.add_argument("--sec-per-epoch", type=float, help="CPU seconds per epoch, instead of --measured")
    args = parser.parse_args(argv)
    names = [e for e in args.experiments if "=" not in e]
    overrides = [e for e in args.experiments if "=" in e]
    if args.sec_per_epoch:
        rate, basis = args.sec_per_epoch, "given"
    else:
        rate, n = measured_cpu_seconds_per_epoch(args.measured)
        basis = f"median of {n} measured retrain stages under {args.measured}"
    print(f"CPU seconds per epoch: {rate:.2f} ({basis})\n\n| grid | runs | epochs | CPU-hours |\n|---|---:|---:|---:|")
    total = 0.0
    for name in names:
        runs, epochs = epochs_of(*grid(name, args.data, overrides))
        total += epochs * rate / 3600
        print(f"| {name} | {runs} | {epochs:,.0f} | {epochs * rate / 3600:.1f} |")
    print(f"| total | | | {total:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
