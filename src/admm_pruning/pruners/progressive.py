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
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from admm_pruning.foundations.checks import dropout_rate, epochs, non_negative, positive
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.foundations.files import load_tensors, save_tensors
from admm_pruning.models.layers import prunable_layers
from admm_pruning.pruners.admm import admm_phase
from admm_pruning.pruners.base import PruneJob, Pruner, PruneResult
from admm_pruning.sparsity.admm import ADMMSchedule
from admm_pruning.sparsity.masks import apply_masks, current_masks, plain_state_dict, remove_masks
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.sparsity.targets import scale_profile
from admm_pruning.store.descriptions import ProgressiveADMMDesc, ProgressiveRetrainDesc
from admm_pruning.store.stages import StageResult
from admm_pruning.training.context import StageContext
from admm_pruning.training.distributed import is_launch_rank_zero
from admm_pruning.training.modules import OptimizerFactory
from admm_pruning.training.recipe import Recipe, train

log = logging.getLogger("admm_pruning")

State = tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]  # (plain weights, masks)


def round_targets(final: float, step: float, targets: list[float] | None = None,
                  rounds: int | None = None) -> list[float]:
    """Overall compression per round, ending exactly at ``final``.

    With ``targets`` given they are used as they are; the last must be ``final`` to 0.1% (the
    compression the integer kept counts give, e.g. 166.99x for 167) and is replaced by it. Otherwise the
    chain is step, step^2, ... (below final / sqrt(step), so no round is a sliver) then final:
    step 3 gives 3, 9, 27, 71 for 71x and 3, 9, 27, 81, 167 for 167x, so chains share prefixes.
    With ``rounds`` = R instead, the chain is final^(1/R), final^(2/R), ..., final: the same number
    of rounds, and so the same epochs, at every target (what an equal-budget comparison needs).
    """
    if targets and rounds:
        raise ConfigError(f"pruner.targets={list(targets)} and pruner.rounds={rounds}: give one of them")
    if rounds is not None:
        if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
            raise ConfigError(f"pruner.rounds={rounds!r}: expected a whole number >= 1")
        return [float(final) ** (k / rounds) for k in range(1, rounds)] + [float(final)]
    if targets:
        given = [float(t) for t in targets]
        out = [*given[:-1], float(final)]
        if any(b <= a for a, b in zip(out, out[1:], strict=False)) or not math.isclose(given[-1], final,
                                                                                      rel_tol=1e-3):
            raise ConfigError(f"pruner.targets={given}: must increase and end at the final compression, "
                              f"{final:.6g}x (prune.compression as the integer kept counts allow)")
        return out
    if step <= 1:
        raise ConfigError(f"pruner.step={step}: must be > 1")
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


class ProgressiveADMMPruner(Pruner):
    """Defaults follow the progressive code (shared reference s.3-4): penalty rho/2 ||W-Z+U||^2,
    rho from 1e-3 x1.3 at each Z/U update, lr schedule reset every ADMM interval, target stepped
    up about 3x per round, masked retraining between rounds. The ADMM phase of every round is the
    one ``ADMMPruner`` runs, with the same ``ADMMSchedule`` options.

    Candidates: each round trains ``candidates`` ADMM runs (different seeds) from each of the
    ``keep_best`` survivors of the previous round and keeps the ``keep_best`` with the highest
    *validation* accuracy after the round's retraining. keep_best = candidates = 1 is the chain.
    """

    name = "admm_progressive"

    def __init__(self, retrain_optimizer: OptimizerFactory, step: float = 3.0, targets: list[float] | None = None,
                 rounds: int | None = None, profile: dict[str, float] | None = None, round_retrain_epochs: int = 40,
                 retrain_l2: float = 0.0, retrain_dropout: float = 0.5, retrain_dropout_scaled_by: str | None = None,
                 candidates: int = 1, keep_best: int = 1, sparsity: dict[str, str] | None = None,
                 **schedule: Any) -> None:
        positive("pruner.rounds", rounds)
        epochs("pruner.round_retrain_epochs", round_retrain_epochs)
        non_negative("pruner.retrain_l2", retrain_l2)
        dropout_rate("pruner.retrain_dropout", retrain_dropout)
        positive("pruner.candidates", candidates)
        positive("pruner.keep_best", keep_best)
        if candidates < 1 or keep_best < 1:
            raise ConfigError(f"pruner.candidates={candidates}, pruner.keep_best={keep_best}: both must be >= 1")
        if not targets and step <= 1:
            raise ConfigError(f"pruner.step={step}: must be > 1")
        self.schedule = ADMMSchedule(**schedule)
        self.step, self.targets, self.n_rounds = step, list(targets) if targets else None, rounds
        self.profile = dict(profile) if profile else None
        self.round_recipe = Recipe(epochs=round_retrain_epochs, batch_size=self.schedule.batch_size,
                                   optimizer=retrain_optimizer, l2=retrain_l2, dropout=retrain_dropout)
        self.dropout_scaled_by = retrain_dropout_scaled_by
        self.candidates, self.keep_best = candidates, keep_best
        self.sparsity = dict(sparsity or {})

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return (*super().options(), *ADMMSchedule.options())

    def rounds(self, sizes: dict[str, int], keep: dict[str, float]) -> list[dict[str, float]]:
        """Per-layer keep fractions of every round; the last is ``keep`` itself.

        Intermediate rounds scale ``profile`` (prune.keep as written), not the final targets,
        whose rounding depends on the final factor: so chains to different finals agree on
        their shared rounds exactly and reuse them. No round keeps less of a layer than the final
        targets do (a sensitivity profile can differ from ``profile``): pruned weights never return.
        """
        chain = round_targets(_compression(sizes, keep), self.step, self.targets, self.n_rounds)
        scaled = [scale_profile(sizes, self.profile or keep, c) for c in chain[:-1]]
        return [{n: max(f, keep[n]) for n, f in r.items()} for r in scaled] + [dict(keep)]

    def pruning_epochs(self, steps_per_epoch: Callable[[int], int], keep: dict[str, float],
                       sizes: dict[str, int]) -> float:
        """Epochs one chain trains: ADMM in every round plus the retraining between rounds
        (the last round's retraining is the shared retrain stage). Candidates multiply it;
        the summary records both."""
        n = len(self.rounds(sizes, keep))
        return n * self.schedule.epochs(steps_per_epoch(self.schedule.batch_size)) + (n - 1) * self.round_recipe.epochs

    def prune(self, job: PruneJob) -> PruneResult:
        sizes = {n: m.weight.numel() for n, m in prunable_layers(job.model).items()}
        plan = self.rounds(sizes, job.keep)
        survivors: list[State] = [(plain_state_dict(job.model), {})]
        history: list[dict[str, Any]] = []
        start = time.monotonic()
        for r, round_keep in enumerate(plan, start=1):
            last = r == len(plan)
            scored = [self._candidate(job, r, round_keep, state, cand, last)
                      for state in survivors for cand in range(self.candidates)]
            # Candidate selection on the validation split (never test); ties keep the first.
            best = sorted(scored, key=lambda s: -(s.metrics["val_acc"] or 0.0))[: 1 if last else self.keep_best]
            history += [{"round": r, "compression": _compression(sizes, round_keep), "stage_dir": str(s.dir),
                         "cached": s.cached, "selected": any(s is b for b in best), "val_acc": s.metrics["val_acc"]}
                        for s in scored]
            _log_round(r, len(plan), history[-len(scored):], time.monotonic() - start)
            survivors = [(load_tensors(s.dir / "weights.pt"), load_tensors(s.dir / "masks.pt")) for s in best]
        weights, masks = survivors[0]
        _load(job.model, weights, masks)
        per_chain = self.pruning_epochs(job.ctx.steps_per_epoch, job.keep, sizes)
        return PruneResult(masks, {"rounds": history, "round_keep": plan, "pruning_epochs_per_chain": per_chain,
                                   "pruning_epochs_all_candidates": per_chain * self.candidates * self.keep_best})

    def _candidate(self, job: PruneJob, r: int, keep: dict[str, float], state: State, cand: int,
                   last: bool) -> StageResult:
        """One candidate of round r: ADMM from ``state`` (then, unless last, the round's retraining),
        each a stage keyed by everything that shaped it, in the cache shared by all runs."""
        cache = job.shared
        assert cache is not None, "progressive ADMM needs the shared stage cache (the pipeline gives it)"
        ctx = replace(job.ctx, seed=job.ctx.seed + 1000 * r + cand)
        start = _fingerprint({**state[0], **{f"mask:{k}": v for k, v in state[1].items()}})
        admm_desc = ProgressiveADMMDesc(start, keep, ctx.seed, self.schedule.settings(), self.sparsity, job.key)

        def admm(d: Path, resume: Path | None) -> dict[str, Any]:
            _load(job.model, *state)
            masks, record = admm_phase(ctx, job.model, keep, self.schedule, self.sparsity, d, resume)
            admm_val = ctx.val_score(job.model)
            _load(job.model, plain_state_dict(job.model), masks)
            return {"admm_val_acc": admm_val, **_save(ctx, job.model, masks, d), **record}

        done = cache.run(admm_desc, admm)
        if last:
            return done

        masks = load_tensors(done.dir / "masks.pt")
        recipe = self.round_recipe.with_dropout_scaled(masks, self.dropout_scaled_by)

        def retrain(d: Path, resume: Path | None) -> dict[str, Any]:
            _load(job.model, load_tensors(done.dir / "weights.pt"), masks)
            train(ctx, job.model, recipe, "round-retrain", d, resume)
            return _save(ctx, job.model, current_masks(job.model), d)

        return cache.run(ProgressiveRetrainDesc(admm_desc, recipe.settings()), retrain)


def _load(model: nn.Module, weights: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> None:
    remove_masks(model)
    model.load_state_dict(weights)
    if masks:
        apply_masks(model, masks)


def _save(ctx: StageContext, model: nn.Module, masks: dict[str, torch.Tensor], d: Path) -> dict[str, Any]:
    """A round's result: masked weights and masks on disk, its kept counts and validation score."""
    save_tensors(d / "weights.pt", plain_state_dict(model))
    save_tensors(d / "masks.pt", masks)
    return {"val_acc": ctx.val_score(model), "kept": {n: int(m.sum()) for n, m in masks.items()}}


def _log_round(r: int, rounds: int, scored: list[dict[str, Any]], elapsed: float) -> None:
    """One line per round (rank 0): a round trains for up to an hour, with nothing else printed.
    The accuracy is the best candidate's, as selection reads it."""
    if not is_launch_rank_zero():
        return
    accs = [s["val_acc"] for s in scored if s["val_acc"] is not None]
    cached = sum(s["cached"] for s in scored)
    how = "cached" if cached == len(scored) else "trained" if not cached else f"{cached}/{len(scored)} cached"
    log.info("admm_progressive round %d/%d: target %.2fx, val acc %s, %s, %.0f s elapsed", r, rounds,
             scored[0]["compression"], f"{max(accs):.4f}" if accs else "-", how, elapsed)


def _compression(sizes: dict[str, int], keep: dict[str, float]) -> float:
    kept = sum(keep_count(sizes[n], keep[n]) if n in keep else s for n, s in sizes.items())
    return sum(sizes.values()) / kept

