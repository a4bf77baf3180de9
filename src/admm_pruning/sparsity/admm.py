"""ADMM for cardinality-constrained training (Zhang et al. 2018).

minimize f(W) s.t. card(W_i) <= l_i, split as W_i = Z_i:
  W-step: minimize f(W) + sum_i rho_scale * rho * ||W_i - Z_i + U_i||_F^2   (squared norm)
  Z-step: Z_i <- Proj(W_i + U_i)   (exact top-k entries, or top-k groups by L2 norm)
  U-step: U_i <- U_i + W_i - Z_i
with Z^0 = Proj(W^0) and U^0 = 0. rho_scale = 0.5 gives the papers' rho/2. A layer's
``sparsity`` type picks its constraint set (ADAM-ADMM's structured sets: filter, channel,
shape, row, column); the default is the unstructured card(W_i) <= l_i.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from admm_pruning.foundations.checks import dropout_rate, factor, non_negative, positive
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.sparsity.projections import group_count, group_mask, keep_count

# How the W-step's lr moves inside the ADMM phase (``lr_policy``); None: ``multistep`` when
# lr_drop_epochs is set, else a constant lr (the TF code).
LR_POLICIES = (
    None,
    "multistep",  # lr x gamma every lr_drop_epochs (Caffe's "step" policy without reset)
    "once",       # lr x gamma once, lr_drop_epochs into each iteration (the Caffe fork's "admm" policy)
    "thirds",     # lr x gamma every epochs_per_iteration / 3 epochs, counted in whole epochs into each
                  # iteration (the progressive code's admm_adjust_learning_rate, called per epoch)
)


@dataclass(frozen=True)
class ADMMSchedule:
    """Everything that shapes one ADMM phase, in one object shared by one-shot and progressive ADMM.

    The defaults are the authors' TF LeNet recipe (conf/pruner/admm.yaml documents each field).
    """

    optimizer: Callable[..., torch.optim.Optimizer] | None = None
    iterations: int = 30
    epochs_per_iteration: float = 4.5
    batch_size: int = 50
    rho: float = 1e-4
    rho_scale: float = 0.5
    rho_multiplier: float = 1.0
    rho_max: float | None = None
    eps: float | None = None
    l2: float = 5e-5
    dropout: float = 0.0
    lr_drop_epochs: float | None = None
    lr_drop_gamma: float = 0.1
    lr_reset_each_iteration: bool = True
    lr_policy: str | None = None

    def __post_init__(self) -> None:
        """Each option checked by its config key (the schedule is the pruner node's options)."""
        for name in ("batch_size", "iterations", "epochs_per_iteration", "rho", "rho_scale", "rho_multiplier",
                     "rho_max", "lr_drop_epochs"):
            positive(f"pruner.{name}", getattr(self, name))
        non_negative("pruner.eps", self.eps)
        non_negative("pruner.l2", self.l2)
        dropout_rate("pruner.dropout", self.dropout)
        factor("pruner.lr_drop_gamma", self.lr_drop_gamma)
        policy = self.lr_policy
        if policy not in LR_POLICIES:
            raise ConfigError(f"pruner.lr_policy={policy!r}: expected one of {', '.join(map(str, LR_POLICIES))}")
        if (policy == "thirds") == (self.lr_drop_epochs is not None) and policy is not None:
            need = "leave pruner.lr_drop_epochs null (thirds of the interval)" if policy == "thirds" \
                else "set pruner.lr_drop_epochs"
            raise ConfigError(f"pruner.lr_policy={policy}: {need}")

    @classmethod
    def options(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def steps_per_iteration(self, steps_per_epoch: int) -> int:
        """Optimizer steps between two Z/U updates (fractional epochs allowed)."""
        return max(1, round(self.epochs_per_iteration * steps_per_epoch))

    def lr_factor(self, step: int, steps_per_epoch: int) -> float:
        """The lr multiplier for the optimizer step after ``step`` steps of the phase (see LR_POLICIES);
        counted from the start of the current ADMM iteration when ``lr_reset_each_iteration``."""
        policy = self.lr_policy or ("multistep" if self.lr_drop_epochs else None)
        if policy is None:
            return 1.0
        into = step % self.steps_per_iteration(steps_per_epoch) if self.lr_reset_each_iteration else step
        if policy == "thirds":  # the progressive code sets the lr at each epoch's start
            return self.lr_drop_gamma ** ((into // steps_per_epoch) // (self.epochs_per_iteration / 3))
        drop = max(1, round(self.lr_drop_epochs * steps_per_epoch))
        if policy == "once":
            return self.lr_drop_gamma if into >= drop else 1.0
        return self.lr_drop_gamma ** (into // drop)

    def epochs(self, steps_per_epoch: int) -> float:
        """Epochs the phase trains: ``iterations`` W-steps."""
        return self.iterations * self.steps_per_iteration(steps_per_epoch) / steps_per_epoch

    def settings(self) -> dict[str, Any]:
        """The fields as plain data, for stage keys (the optimizer by its repr)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["optimizer"] = repr(self.optimizer)
        return out


def converged(residuals: dict[str, dict[str, float]], eps: float | None) -> bool:
    """The papers' stop: every layer's primal ||W-Z||^2 AND dual ||Z'-Z||^2 at or below eps."""
    return eps is not None and all(v <= eps for per_layer in residuals.values() for v in per_layer.values())


def _key(layer: str) -> str:
    return layer.replace(".", "__")


class ADMMState(nn.Module):
    """Z, U, rho and the iteration count as buffers, so a checkpoint restores all of them."""

    def __init__(self, weights: dict[str, torch.Tensor], keep: dict[str, float], schedule: ADMMSchedule,
                 sparsity: dict[str, str] | None = None, groups: dict[str, int] | None = None) -> None:
        super().__init__()
        self.layers = list(keep)
        self.schedule = schedule
        self.sparsity = {name: (sparsity or {}).get(name, "unstructured") for name in self.layers}
        self.groups = {name: (groups or {}).get(name, 1) for name in self.layers}  # a grouped conv's towers
        # l_i counts groups (entries when unstructured)
        self.k = {name: keep_count(group_count(weights[name].shape, self.sparsity[name], self.groups[name]),
                                   keep[name]) for name in self.layers}
        self._terms: tuple[float, dict[str, torch.Tensor]] | None = None  # see add_penalty_grad_
        self.register_buffer("rho", torch.tensor(float(schedule.rho)))
        self.register_buffer("iteration", torch.tensor(0, dtype=torch.long))
        for name in self.layers:
            w = weights[name].detach()
            self.register_buffer(f"z_{_key(name)}", self._project(name, w))
            self.register_buffer(f"u_{_key(name)}", torch.zeros_like(w))

    def z(self, name: str) -> torch.Tensor:
        return getattr(self, f"z_{_key(name)}")

    def u(self, name: str) -> torch.Tensor:
        return getattr(self, f"u_{_key(name)}")

    def _project(self, name: str, w: torch.Tensor) -> torch.Tensor:
        return w * group_mask(w, self.sparsity[name], self.k[name], self.groups[name])

    def penalty(self, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """sum_i rho_scale * rho * ||W_i - Z_i + U_i||_F^2 (the squared Frobenius norm)."""
        total = sum((weights[n] - self.z(n) + self.u(n)).pow(2).sum() for n in self.layers)
        return self.schedule.rho_scale * self.rho * total

    @torch.no_grad()
    def add_penalty_grad_(self, params: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
                          l2: float = 0.0) -> None:
        """Add d(penalty)/dW = c * (W - Z + U), c = 2 * rho_scale * rho, to each weight's .grad in
        place, and with ``l2`` the L2 term's l2 * W too, in the same pass: (c + l2) * W.

        Same gradient as back-propagating ``penalty`` (the Caffe code adds rho * (W - Z + U)),
        without building the penalty graph every step. ``params`` maps a layer to
        (parameter, mask or None); a masked layer's gradient stays zero where pruned.
        Z, U and rho change only at a Z/U update, so c and c * (U - Z) are computed once per update
        (``_step_terms``) and a step costs two fused passes, (c + l2) * W and the constant: 0.5 ms
        of a LeNet-5 step on one core, against 1.3 ms for the three allocating passes of
        (W - Z + U) * c. c is read from rho then, never per step (a GPU would sync on every read).
        """
        c, const = self._step_terms()
        layers = [n for n in self.layers if params[n][0].grad is not None]
        if not layers:
            return
        grads = [params[n][0].grad for n in layers]
        torch._foreach_add_(grads, [params[n][0] for n in layers], alpha=c + l2)
        torch._foreach_add_(grads, [const[n] for n in layers])
        # The parametrized form (fast.step_masks=false): zero the pruned entries, where the task
        # gradient through the mask is already zero; the same numbers as step masks, bit for bit.
        masked = [n for n in layers if params[n][1] is not None]
        if masked:
            torch._foreach_mul_([params[n][0].grad for n in masked], [params[n][1] for n in masked])

    def _step_terms(self) -> tuple[float, dict[str, torch.Tensor]]:
        """(c, {layer: c * (U - Z)}), cached until Z, U or rho change."""
        if self._terms is None:
            c = float(self.rho) * 2.0 * self.schedule.rho_scale
            self._terms = (c, {n: (self.u(n) - self.z(n)).mul_(c) for n in self.layers})
        return self._terms

    def _apply(self, fn, recurse: bool = True):  # noqa: ANN001, ANN202 - nn.Module's signature
        self._terms = None  # device or layout moves: rebuild from the moved buffers
        return super()._apply(fn, recurse)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # noqa: ANN002, ANN003
        self._terms = None  # a restored checkpoint brings its own Z, U and rho
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def update(self, weights: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
        """One Z-step and U-step; returns the per-layer primal ||W-Z||^2 and dual ||Z'-Z||^2.

        rho then follows its schedule (multiplied each update; 1.0 keeps it constant).
        """
        primal, dual = {}, {}
        for n in self.layers:
            w, z, u = weights[n].detach(), self.z(n), self.u(n)
            z_new = self._project(n, w + u)
            dual[n] = (z_new - z).pow(2).sum().item()
            primal[n] = (w - z_new).pow(2).sum().item()
            u.add_(w - z_new)
            z.copy_(z_new)
        self._terms = None
        self.iteration += 1
        rho = self.rho * self.schedule.rho_multiplier
        if self.schedule.rho_max is not None:
            rho = rho.clamp(max=self.schedule.rho_max)
        self.rho.copy_(rho)
        return {"primal": primal, "dual": dual}
