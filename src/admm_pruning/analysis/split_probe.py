"""Which per-layer split to take a trained sparse model to: the validation accuracy, with no
retraining, of magnitude pruning one stage's weights to an overall compression under (a) a preset
profile scaled to it and (b) one global magnitude threshold over the surviving weights.

Why: a progressive chain's last step removes most of what remains, and the split of that step
decides how much the model keeps before any training. Only the validation split is read, so a
split chosen from this table is chosen on validation. Pruned weights never return: a split that
keeps more of a layer than the stage holds is refused.

    python -m admm_pruning.analysis.split_probe STAGE_DIR --compression 167 \\
        --profile conv1=0.2,conv2=0.053,fc1=0.01,fc2=0.07 --out results/<experiment>/split_probe.md

STAGE_DIR may also be a progressive run's summary.json with ``--round R``: the stage that ended
round R of that run, found under the artifacts folder (ADMM_ARTIFACTS, else ./artifacts).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from torch import nn

from admm_pruning.foundations.files import atomic_write, load_tensors
from admm_pruning.models.layers import prunable_layers
from admm_pruning.report.provenance import describe, provenance
from admm_pruning.sparsity.masks import apply_masks, global_magnitude_masks, magnitude_masks, remove_masks
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.sparsity.targets import scale_profile
from admm_pruning.training.context import StageContext


def stage_context(settings: dict[str, Any]) -> dict[str, Any]:
    """The model and data nodes a stage was made with (top level, or under a parent's context)."""
    if "model" in settings and "data" in settings:
        return settings
    for value in settings.values():
        if isinstance(value, dict) and (found := stage_context(value)):
            return found
    return {}


def round_stage(summary: Path, round_: int, artifacts: Path) -> Path:
    """The stage folder that ended round ``round_`` of a progressive run, from its summary."""
    chain = artifacts / "stages" / Path(json.loads(summary.read_text())["stage_dirs"]["admm_progressive"]).name
    rounds = json.loads((chain / "metrics.json").read_text())["rounds"]
    if not 1 <= round_ < len(rounds):
        raise SystemExit(f"--round {round_}: {summary} has rounds 1 to {len(rounds) - 1} before its last")
    return artifacts / "stages" / Path(rounds[round_ - 1]["stage_dir"]).name


def splits(model: nn.Module, profile: dict[str, float], compression: float) -> dict[str, dict[str, float]]:
    """Candidate keep fractions per layer, each with round(total / compression) weights kept."""
    sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    held = {n: int((m.weight != 0).sum()) for n, m in prunable_layers(model).items()}
    preset = scale_profile(sizes, profile, compression)
    over = {n: f"{keep_count(sizes[n], f)} > {held[n]}" for n, f in preset.items() if keep_count(sizes[n], f) > held[n]}
    if over:
        raise ValueError(f"--profile scaled to {compression:g}x keeps more than the stage holds: {over}")
    k = round(sum(sizes.values()) / compression) - sum(s for n, s in sizes.items() if n not in profile)
    masks = global_magnitude_masks(model, list(profile), k)
    return {"preset, scaled": preset,
            "global magnitude": {n: int(masks[n].sum()) / sizes[n] for n in profile}}


def probe(ctx: StageContext, model: nn.Module, candidates: dict[str, dict[str, float]]) -> dict[str, float]:
    """Validation top-1 of ``model`` pruned by magnitude to each candidate, weights restored after."""
    saved = {n: m.weight.detach().clone() for n, m in prunable_layers(model).items()}
    scores = {"stage as saved": ctx.evaluate(model, "val")}
    for name, keep in candidates.items():
        apply_masks(model, magnitude_masks(model, keep))
        scores[name] = ctx.evaluate(model, "val")
        remove_masks(model)
        with torch.no_grad():
            for n, m in prunable_layers(model).items():
                m.weight.copy_(saved[n])
    return scores


def report(command: str, stage: str, model: nn.Module, candidates: dict[str, dict[str, float]],
           scores: dict[str, float], compression: float, where: dict[str, Any]) -> str:
    sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
    held = {n: int((m.weight != 0).sum()) / sizes[n] for n, m in prunable_layers(model).items()}
    layers = list(next(iter(candidates.values())))
    rows = [("stage as saved", held), *candidates.items()]
    return "\n".join([
        f"# Split probe: stage `{stage}` pruned to {compression:g}x, no retraining", "",
        f"Command: `{command}`. Kept % per layer, and validation top-1 after magnitude pruning "
        "to each split (only the validation split is read).", "",
        "| split | " + " | ".join(f"{n} kept %" for n in layers) + " | weights kept | val top-1 |",
        "|---|" + "---:|" * (len(layers) + 2),
        *(f"| {name} | " + " | ".join(f"{100 * keep[n]:.3f}" for n in layers)
          + f" | {sum(keep_count(sizes[n], keep[n]) for n in layers):,} | {100 * scores[name]:.2f}% |"
          for name, keep in rows),
        "", describe(where), ""])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("stage", type=Path, help="a stage folder (weights.pt, settings.json), or a summary.json")
    ap.add_argument("--round", type=int, help="with a summary.json: the round whose stage to probe")
    ap.add_argument("--compression", type=float, required=True)
    ap.add_argument("--profile", required=True, help="layer=fraction,... the preset to scale")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    command = f"python -m admm_pruning.analysis.split_probe {args.stage}" + (
        f" --round {args.round}" if args.round is not None else "")
    if args.round is not None:
        args.stage = round_stage(args.stage, args.round, Path(os.environ.get("ADMM_ARTIFACTS", "artifacts")))
    profile = {k: float(v) for k, v in (item.split("=") for item in args.profile.split(","))}
    node = stage_context(json.loads((args.stage / "settings.json").read_text()))
    if not node:
        raise SystemExit(f"{args.stage / 'settings.json'}: no model and data settings found")
    model = instantiate(node["model"]["net"])
    model.load_state_dict(load_tensors(args.stage / "weights.pt"))
    model.eval()
    data = instantiate(node["data"], data_dir=os.environ.get("DATA_DIR", "./data")).setup()
    ctx = StageContext(data=data, trainer_kwargs={"accelerator": "cpu", "devices": 1, "enable_progress_bar": False,
                                                  "enable_model_summary": False}, seed=0, experiment="split_probe")
    candidates = splits(model, profile, args.compression)
    command += f" --compression {args.compression:g} --profile {args.profile}"
    text = report(command, args.stage.name, model, candidates, probe(ctx, model, candidates), args.compression,
                  provenance(torch.device("cpu")))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.out, lambda p: p.write_text(text))
    print(text)


if __name__ == "__main__":
    main()
