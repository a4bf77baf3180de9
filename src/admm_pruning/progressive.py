"""Progressive ADMM (Ye et al.): reach an extreme target in rounds of moderate steps.

Each round starts from the previous round's masked model, runs ADMM towards the round's
target (the projection only ever sees the surviving weights: pruned weights are held at zero
by their masks, so W, Z and U all vanish there), hard-prunes inside the old support, and
retrains with the mask fixed. The last round's retraining is the shared retrain stage.

Rounds are cached stages of their own, keyed by the exact starting weights and masks they
were given, so a crash in round 3 resumes there and a later run with a higher final target
reuses every round the two chains share.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .masks import apply_masks, current_masks, magnitude_masks, plain_state_dict, remove_masks
from .models import prunable_layers, set_dropout
from .modules import ADMMModule, ClassifierModule, OptimizerFactory
from .projections import keep_count
from .stages import StageCache, load_tensors, save_tensors
from .targets import scale_profile
from .training import StageContext


def round_targets(final: float, step: float, targets: list[float] | None = None) -> list[float]:
    """Overall compression per round, ending exactly at ``final``.

    With ``targets`` given they are used as they are (the last must be ``final``). Otherwise the
    chain is step, step^2, ... (below final / sqrt(step), so no round is a sliver) then final:
    step 3 gives 3, 9, 27, 71 for 71x and 3, 9, 27, 81, 167 for 167x, so chains share prefixes.
    """
    if targets:
        out = [float(t) for t in targets]
        if any(b <= a for a, b in zip(out, out[1:], strict=False)) or not math.isclose(out[-1], final):
            raise ValueError(f"pruner.targets={out}: must increase and end at the final {final:g}x")
        return out
    if step <= 1:
        raise ValueError(f"pruner.step={step}: must be > 1")
    out, c = [], step
    while c < final / math.sqrt(step):
        out.append(c)
        c *= step
    return [*out, float(final)]


def _fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """Content hash of a state: the key that ties a round to the exact model it started from."""
    h = hashlib.sha256()
    for k in sorted(tensors):
        h.update(k.encode())
        h.update(tensors[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class ProgressiveADMMPruner:
    """Defaults follow the progressive code (shared/REFERENCE.md s.3-4): penalty rho/2 ||W-Z+U||^2,
    rho from 1e-3 x1.3 at each Z/U update, lr schedule reset every ADMM interval, target stepped
    up about 3x per round, masked retraining between rounds.

    Candidates: each round trains ``candidates`` ADMM runs (different seeds) from each of the
    ``keep_best`` survivors of the previous round and keeps the ``keep_best`` with the highest
    *validation* accuracy after the round's retraining. keep_best = candidates = 1 is the chain.
    """

    name = "admm_progressive"

    def __init__(
        self,
        optimizer: OptimizerFactory,
        retrain_optimizer: OptimizerFactory,
        step: float = 3.0,
        targets: list[float] | None = None,
        iterations: int = 10,
        epochs_per_iteration: float = 4.0,
        round_retrain_epochs: int = 40,
        batch_size: int = 50,
        rho: float = 1e-3,
        rho_scale: float = 0.5,
        rho_multiplier: float = 1.3,
        rho_max: float | None = None,
        l2: float = 5e-5,
        dropout: float = 0.0,
        retrain_l2: float = 0.0,
        retrain_dropout: float = 0.5,
        lr_drop_epochs: float | None = None,
        lr_drop_gamma: float = 0.1,
        candidates: int = 1,
        keep_best: int = 1,
        profile: dict[str, float] | None = None,
        **_: Any,
    ) -> None:
        if candidates < 1 or keep_best < 1:
            raise ValueError(f"pruner.candidates={candidates}, pruner.keep_best={keep_best}: both must be >= 1")
        self.optimizer, self.retrain_optimizer = optimizer, retrain_optimizer
        self.step, self.targets = step, list(targets) if targets else None
        self.iterations, self.epochs_per_iteration = iterations, epochs_per_iteration
        self.round_retrain_epochs, self.batch_size = round_retrain_epochs, batch_size
        self.rho, self.rho_scale, self.rho_multiplier, self.rho_max = rho, rho_scale, rho_multiplier, rho_max
        self.l2, self.dropout = l2, dropout
        self.retrain_l2, self.retrain_dropout = retrain_l2, retrain_dropout
        self.lr_drop_epochs, self.lr_drop_gamma = lr_drop_epochs, lr_drop_gamma
        self.candidates, self.keep_best = candidates, keep_best
        self.profile = dict(profile) if profile else None

    def _steps(self, steps_per_epoch: int) -> int:
        return max(1, round(self.epochs_per_iteration * steps_per_epoch))

    def schedule(self, sizes: dict[str, int], keep: dict[str, float]) -> list[dict[str, float]]:
        """Per-layer keep fractions of every round; the last is ``keep`` itself.

        Intermediate rounds scale ``profile`` (prune.keep as written), not the final targets,
        whose rounding depends on the final factor: so chains to different finals agree on
        their shared rounds exactly and reuse them.
        """
        chain = round_targets(_compression(sizes, keep), self.step, self.targets)
        return [scale_profile(sizes, self.profile or keep, c) for c in chain[:-1]] + [dict(keep)]

    def pruning_epochs(self, data: Any, keep: dict[str, float] | None = None,
                       sizes: dict[str, int] | None = None) -> float:
        """Epochs one chain trains: ADMM in every round plus the retraining between rounds
        (the last round's retraining is the shared retrain stage). Candidates multiply it;
        the summary records both."""
        spe = data.steps_per_epoch(self.batch_size)
        n = len(self.schedule(sizes, keep)) if keep and sizes else len(self.targets or [None])
        return n * self.iterations * self._steps(spe) / spe + (n - 1) * self.round_retrain_epochs

    def _recipe(self) -> dict[str, Any]:
        keys = ("iterations", "epochs_per_iteration", "batch_size", "rho", "rho_scale", "rho_multiplier",
                "rho_max", "l2", "dropout", "lr_drop_epochs", "lr_drop_gamma")
        return {**{k: getattr(self, k) for k in keys}, "optimizer": repr(self.optimizer)}

    def _admm(self, ctx: StageContext, model: nn.Module, keep: dict[str, float],
              d: Path, resume: Path | None) -> dict[str, Any]:
        """ADMM towards ``keep`` inside the model's current support, then the hard prune."""
        old = current_masks(model)
        spe = ctx.data.steps_per_epoch(self.batch_size)
        steps = self._steps(spe)
        drop = round(self.lr_drop_epochs * spe) if self.lr_drop_epochs else None
        set_dropout(model, self.dropout)
        module = ADMMModule(
            model, self.optimizer, keep, steps, self.iterations, self.rho, rho_scale=self.rho_scale,
            rho_multiplier=self.rho_multiplier, rho_max=self.rho_max, l2=self.l2,
            lr_drop_steps=drop, lr_drop_gamma=self.lr_drop_gamma, lr_reset_each_iteration=True)
        ctx.fit(module, "admm", d, resume, self.batch_size, max_epochs=-(-self.iterations * steps // spe))
        admm_acc = _val_acc(ctx, model)
        new = magnitude_masks(model, keep)
        masks = {n: new[n] & old[n] if n in old else new[n] for n in new}
        remove_masks(model)
        apply_masks(model, masks)
        save_tensors(d / "weights.pt", plain_state_dict(model))
        save_tensors(d / "masks.pt", masks)
        return {"admm_val_acc": admm_acc, "val_acc": _val_acc(ctx, model), "iterations_run": int(module.admm.iteration),
                "kept": {n: int(m.sum()) for n, m in masks.items()}, "residuals": module.history}

    def _retrain(self, ctx: StageContext, model: nn.Module, d: Path, resume: Path | None) -> dict[str, Any]:
        set_dropout(model, self.retrain_dropout)
        module = ClassifierModule(model, self.retrain_optimizer, l2=self.retrain_l2, stage="round-retrain")
        ctx.fit(module, "round-retrain", d, resume, self.batch_size, max_epochs=self.round_retrain_epochs)
        save_tensors(d / "weights.pt", plain_state_dict(model))
        save_tensors(d / "masks.pt", current_masks(model))
        return {"val_acc": _val_acc(ctx, model)}

    def run(self, ctx: StageContext, model: nn.Module, keep: dict[str, float],
            stage_dir: Path, resume: Path | None) -> dict[str, Any]:
        sizes = {n: m.weight.numel() for n, m in prunable_layers(model).items()}
        plan = self.schedule(sizes, keep)
        cache = StageCache(stage_dir.parent)  # shared with other runs: chains reuse common rounds
        survivors: list[tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]] = [(plain_state_dict(model), {})]
        history: list[dict[str, Any]] = []

        def load(w: dict[str, torch.Tensor], m: dict[str, torch.Tensor]) -> None:
            remove_masks(model)
            model.load_state_dict(w)
            if m:
                apply_masks(model, m)

        for r, round_keep in enumerate(plan, start=1):
            last = r == len(plan)
            scored = []
            for weights, masks in survivors:
                start = _fingerprint({**weights, **{f"mask:{k}": v for k, v in masks.items()}})
                for cand in range(self.candidates):
                    cctx = replace(ctx, seed=ctx.seed + 1000 * r + cand)
                    admm_settings = {"start": start, "keep": round_keep, "seed": cctx.seed, "recipe": self._recipe()}

                    def admm(d: Path, res: Path | None, w=weights, m=masks, c=cctx, k=round_keep) -> dict[str, Any]:
                        load(w, m)
                        return self._admm(c, model, k, d, res)

                    done = cache.run("progressive-admm", admm_settings, admm)
                    if not last:
                        def retrain(d: Path, res: Path | None, src: Path = done.dir, c=cctx) -> dict[str, Any]:
                            load(load_tensors(src / "weights.pt"), load_tensors(src / "masks.pt"))
                            return self._retrain(c, model, d, res)

                        settings = {"parent": admm_settings, "epochs": self.round_retrain_epochs,
                                    "l2": self.retrain_l2, "dropout": self.retrain_dropout,
                                    "optimizer": repr(self.retrain_optimizer)}
                        done = cache.run("progressive-retrain", settings, retrain)
                    scored.append(done)
            # Candidate selection on the validation split (never test); ties keep the first.
            ranked = sorted(scored, key=lambda s: -(s.metrics["val_acc"] or 0.0))
            best = ranked[: 1 if last else self.keep_best]
            history += [{"round": r, "compression": _compression(sizes, round_keep), "stage_dir": str(s.dir),
                         "cached": s.cached, "selected": any(s is b for b in best), "val_acc": s.metrics["val_acc"]}
                        for s in scored]
            survivors = [(load_tensors(s.dir / "weights.pt"), load_tensors(s.dir / "masks.pt")) for s in best]
        weights, masks = survivors[0]
        load(weights, {})
        save_tensors(stage_dir / "weights.pt", weights)
        save_tensors(stage_dir / "masks.pt", masks)
        apply_masks(model, masks)
        per_chain = self.pruning_epochs(ctx.data, keep, sizes)
        return {"rounds": history, "round_keep": plan,
                "pruning_epochs_per_chain": per_chain,
                "pruning_epochs_all_candidates": per_chain * self.candidates * self.keep_best,
                "pruned_acc": ctx.evaluate(model)}


def _compression(sizes: dict[str, int], keep: dict[str, float]) -> float:
    kept = sum(keep_count(sizes[n], keep[n]) if n in keep else s for n, s in sizes.items())
    return sum(sizes.values()) / kept


def _val_acc(ctx: StageContext, model: nn.Module) -> float | None:
    """Validation accuracy, the only score candidates are chosen by; None without a val split."""
    return ctx.evaluate(model, "val") if len(ctx.data.setup().val) else None
