"""ADMM pruning inside your own PyTorch loop (Zhang et al. 2018), in the style of Torch-Pruning's
``regularize(model)``::

    admm = ADMM(model, {"fc1": 0.05, "fc2": 0.1}, ADMMSchedule(rho=1e-3), update_every=500)
    for x, y in loader:
        loss_fn(model(x), y).backward()
        admm.penalize_()        # + rho * (W - Z + U) (and l2 * W) on the gradients
        optimizer.step(); optimizer.zero_grad()
        admm.step()             # Z- and U-steps every ``update_every`` optimizer steps
    masks = admm.hard_prune()   # the l_i largest of W itself, per layer
    apply_masks(model, masks)   # retrain: pruned weights stay exactly zero

The penalty is the squared Frobenius norm rho_scale * rho * ||W - Z + U||^2 (``ADMMSchedule``), added
as its exact gradient; Z^0 is the projection of W^0 and U^0 = 0. The Lightning callback
(``admm_pruning.ADMMPruning``) drives this same object.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

from admm_pruning.models.layers import prunable_layers
from admm_pruning.sparsity.admm import ADMMSchedule, ADMMState, converged
from admm_pruning.sparsity.masks import global_magnitude_masks, hard_prune, weight_param
from admm_pruning.sparsity.projections import nm_keep
from admm_pruning.sparsity.structured import check_sparsity
from admm_pruning.sparsity.targets import scale_profile

Targets = dict[str, float] | float
# Which weights: layer names, modules, (module, "weight") pairs as Lightning's ModelPruning takes, or a
# filter called with (name, module) for every Conv2d and Linear; None: all of them.
Layers = Iterable[str | nn.Module | tuple[nn.Module, str]] | Callable[[str, nn.Module], bool] | None
PROFILES = ("uniform", "global_magnitude")


def layer_names(model: nn.Module, layers: Layers = None) -> list[str]:
    """The names (in ``model``) of the Conv2d and Linear layers ``layers`` selects."""
    found = prunable_layers(model)
    if layers is None:
        return list(found)
    if callable(layers) and not isinstance(layers, nn.Module):
        return [n for n, m in found.items() if layers(n, m)]
    by_module = {id(m): n for n, m in found.items()}
    names = []
    for item in layers:
        if isinstance(item, tuple):
            item, attr = item
            if attr != "weight":
                raise ValueError(f"({type(item).__name__}, {attr!r}): ADMM prunes a layer's 'weight'")
        if isinstance(item, nn.Module) and id(item) not in by_module:
            raise ValueError(f"{type(item).__name__} is not one of the model's Conv2d or Linear layers")
        names.append(by_module[id(item)] if isinstance(item, nn.Module) else str(item))
    return names


def resolve_targets(model: nn.Module, targets: Targets, layers: Layers = None,
                    sparsity: dict[str, str] | None = None, profile: str = "uniform") -> dict[str, float]:
    """Per-layer keep fractions: as given (a dict), or one overall compression of the model's Conv2d
    and Linear weights (a float, e.g. 20.0: total / 20 of them kept; layers not selected stay dense)
    spread over the selected ``layers`` by ``profile``: ``uniform`` keeps the same fraction of each,
    ``global_magnitude`` the split one magnitude threshold over them gives. N:M layers keep N / M."""
    found = prunable_layers(model)
    names = layer_names(model, layers)
    unknown = [n for n in ([*targets] if isinstance(targets, dict) else names) if n not in found]
    if unknown:
        raise ValueError(f"unknown layers {unknown}; Conv2d and Linear layers are {', '.join(found)}")
    if profile not in PROFILES:
        raise ValueError(f"profile={profile!r}: expected one of {', '.join(PROFILES)}")
    implied = {n: f for n, kind in (sparsity or {}).items() if (f := nm_keep(kind)) is not None}
    if isinstance(targets, dict):
        return {**implied, **{n: float(f) for n, f in targets.items()}}
    sizes = {n: m.weight.numel() for n, m in found.items()}
    rest = [n for n in names if n not in implied]
    if not rest:
        return implied
    # kept by the others: the layers not selected (dense) and the N:M ones (N / M of theirs)
    fixed = sum(sizes[n] for n in found if n not in rest and n not in implied) + \
        sum(round(f * sizes[n]) for n, f in implied.items())
    k = round(sum(sizes.values()) / float(targets)) - fixed
    if not len(rest) <= k <= sum(sizes[n] for n in rest):
        raise ValueError(f"compression {float(targets):g}: the selected layers would keep {k} weights, "
                         f"outside 1 per layer to all of them")
    if profile == "global_magnitude":
        masks = global_magnitude_masks(model, rest, k)
        return {**implied, **{n: int(masks[n].sum()) / sizes[n] for n in rest}}
    sub = {n: sizes[n] for n in rest}
    return {**implied, **scale_profile(sub, dict.fromkeys(rest, 1.0), sum(sub.values()) / k)}


class ADMM:
    """ADMM towards per-layer targets for ``model``'s Conv2d and Linear weights.

    ``targets``: keep fractions by layer name, or one overall compression spread over ``layers`` by
    ``profile`` (see ``resolve_targets``; ``layers``: see ``Layers``). ``sparsity``: a type per
    layer (unstructured by default; filter, channel, shape for convs; row, column for Linear; "N:M"
    for either). ``update_every``: optimizer steps between Z/U updates (default: the schedule's
    ``epochs_per_iteration`` times ``steps_per_epoch``).
    """

    def __init__(self, model: nn.Module, targets: Targets, schedule: ADMMSchedule | None = None,
                 sparsity: dict[str, str] | None = None, layers: Layers = None,
                 update_every: int | None = None, steps_per_epoch: int | None = None,
                 profile: str = "uniform") -> None:
        self.model, self.schedule = model, schedule or ADMMSchedule()
        self.sparsity = dict(sparsity or {})
        self.keep = resolve_targets(model, targets, layers, self.sparsity, profile)
        found = prunable_layers(model)
        check_sparsity(found, self.keep, self.sparsity)
        if update_every is None and steps_per_epoch is None:
            raise ValueError("give update_every (optimizer steps between Z/U updates) or steps_per_epoch")
        if update_every is not None and update_every < 1:
            raise ValueError(f"update_every={update_every}: must be >= 1")
        self.update_every = int(update_every or self.schedule.steps_per_iteration(steps_per_epoch))
        self.layers = {n: found[n] for n in self.keep}
        groups = {n: getattr(m, "groups", 1) for n, m in self.layers.items()}
        self.state = ADMMState(self.weights(), self.keep, self.schedule, self.sparsity, groups)
        self.steps = 0
        self.history: list[dict[str, Any]] = []

    def weights(self) -> dict[str, torch.Tensor]:
        """The effective (masked, if masked) weights of the pruned layers."""
        return {n: m.weight for n, m in self.layers.items()}

    @property
    def done(self) -> bool:
        """All ``schedule.iterations`` updates made, or the residuals below ``schedule.eps``."""
        last = self.history[-1] if self.history else None
        return int(self.state.iteration) >= self.schedule.iterations or bool(
            last and converged({"primal": last["primal"], "dual": last["dual"]}, self.schedule.eps))

    @torch.no_grad()
    def penalize_(self, l2: bool = True) -> None:
        """Add rho_scale * 2 * rho * (W - Z + U), and with ``l2`` the schedule's l2 * W, to the weights'
        gradients in place. Call after backward and after unscaling (GradScaler.unscale_), before
        ``optimizer.step()``; with gradient accumulation once per optimizer step."""
        params = {n: weight_param(m) for n, m in self.layers.items()}
        self.state.add_penalty_grad_(params, l2=self.schedule.l2 if l2 else 0.0)

    def step(self) -> dict[str, dict[str, float]] | None:
        """Count one optimizer step; every ``update_every`` steps run the Z- and U-steps and return
        the per-layer residuals (primal ||W - Z||^2, dual ||Z' - Z||^2); None between updates."""
        if self.done:
            return None
        self.steps += 1
        return None if self.steps % self.update_every else self.update()

    def update(self) -> dict[str, dict[str, float]]:
        """One Z-step and U-step now (rho then follows its schedule); the residuals go to ``history``."""
        rho = float(self.state.rho)
        res = self.state.update(self.weights())
        self.history.append({"iteration": int(self.state.iteration), "rho": rho, **res})
        return res

    def hard_prune(self) -> dict[str, torch.Tensor]:
        """Masks keeping the l_i largest entries (or groups) of W itself, not of Z, inside the
        support the model already has (weights pruned earlier stay pruned)."""
        return hard_prune(self.model, self.keep, self.sparsity)

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state.state_dict(), "steps": self.steps, "history": list(self.history)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state.load_state_dict(state["state"])
        self.steps, self.history = int(state["steps"]), list(state["history"])
