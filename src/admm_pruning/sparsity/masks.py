"""Masks as parametrizations: the optimizer keeps the original weight, the forward pass sees
weight * mask, pruned entries get exactly zero gradient, and state dicts round-trip."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrize

from admm_pruning.models.layers import prunable_layers
from admm_pruning.sparsity.projections import group_count, group_mask, keep_count, topk_mask


class Mask(nn.Module):
    """weight -> weight * mask, with the mask a buffer so that checkpoints carry it."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.to(torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        out = w * self.mask
        # Keep a channels-last weight's strides (training/fast.py). With one input channel (conv1 of
        # LeNet) both layouts are the same memory and the product comes back with NCHW strides: the
        # convolution would then run in NCHW and reorder its output, 40% of a masked step.
        if (w.dim() == 4 and out.stride() != w.stride() and w.is_contiguous(memory_format=torch.channels_last)
                and out.is_contiguous(memory_format=torch.channels_last)):
            out = out.as_strided(out.shape, w.stride())
        return out


def magnitude_masks(model: nn.Module, keep: dict[str, float],
                    sparsity: dict[str, str] | None = None) -> dict[str, torch.Tensor]:
    """Hard-prune masks: per named layer, the top-k weights by magnitude, or for a layer with a
    structured ``sparsity`` type the top-k groups by L2 norm (the projection the Z-step used)."""
    layers, masks = prunable_layers(model), {}
    for name, frac in keep.items():
        w, groups = layers[name].weight, getattr(layers[name], "groups", 1)
        kind = (sparsity or {}).get(name, "unstructured")
        masks[name] = group_mask(w, kind, keep_count(group_count(w.shape, kind, groups), frac), groups)
    return masks


def hard_prune(model: nn.Module, keep: dict[str, float], sparsity: dict[str, str] | None = None
               ) -> dict[str, torch.Tensor]:
    """Masks keeping the l_i largest entries (or groups) of W itself, not of Z, inside the support
    the model already has: weights pruned in an earlier round stay pruned."""
    old = current_masks(model)
    new = magnitude_masks(model, keep, sparsity)
    return {**old, **{n: new[n] & old[n] if n in old else new[n] for n in new}}


def global_magnitude_masks(model: nn.Module, layers: list[str], k: int) -> dict[str, torch.Tensor]:
    """One magnitude threshold across ``layers``: the k largest weights of them all survive
    (torch's global_unstructured / ShrinkBench's GlobalMagWeight), except that each layer's
    largest weight always survives, inside the same k: a layer pruned to nothing would
    disconnect the network."""
    mods = prunable_layers(model)
    scores = []
    for n in layers:
        s = mods[n].weight.detach().abs().flatten().clone()
        s[s.argmax()] = float("inf")
        scores.append(s)
    keep = topk_mask(torch.cat(scores), k)
    out, start = {}, 0
    for n in layers:
        w = mods[n].weight
        out[n] = keep[start:start + w.numel()].view_as(w)
        start += w.numel()
    return out


def remove_masks(model: nn.Module) -> None:
    """Bake the masks into the weights and drop the parametrizations (before re-masking)."""
    for layer in prunable_layers(model).values():
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)


def apply_masks(model: nn.Module, masks: dict[str, torch.Tensor]) -> None:
    """Zero the pruned weights in place and attach the masks as parametrizations."""
    layers = prunable_layers(model)
    for name, mask in masks.items():
        layer = layers[name]
        mask = mask.to(layer.weight.device)
        with torch.no_grad():
            layer.weight.mul_(mask)
        parametrize.register_parametrization(layer, "weight", Mask(mask))


def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks attached to the model's layers, by layer name."""
    out = {}
    for name, layer in prunable_layers(model).items():
        if parametrize.is_parametrized(layer, "weight"):
            for p in layer.parametrizations.weight:
                if isinstance(p, Mask):
                    out[name] = p.mask.clone()
    return out


def weight_param(layer: nn.Module) -> tuple[nn.Parameter, torch.Tensor | None]:
    """The parameter the optimizer updates for ``layer.weight``, and its mask if masked."""
    if parametrize.is_parametrized(layer, "weight"):
        mask = next((p.mask for p in layer.parametrizations.weight if isinstance(p, Mask)), None)
        return layer.parametrizations.weight.original, mask
    return layer.weight, None


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with the masked (effective) weights under the plain keys.

    It loads into an unmasked model of the same class, with no code from this suite.
    """
    state = {}
    for key, value in model.state_dict().items():
        if ".parametrizations." in key:
            if not key.endswith(".original"):
                continue  # the mask buffers: saved separately
            module_name, _, rest = key.partition(".parametrizations.")
            attr = rest.split(".")[0]
            owner = model.get_submodule(module_name)
            key, value = f"{module_name}.{attr}", getattr(owner, attr)
        state[key] = value.detach().clone().cpu()
    return state


class RevivedWeightsError(RuntimeError):
    """Pruned weights changed during masked training: the masks did not hold."""


class StepMasks:
    """Masks held beside the model during a fit instead of in its forward pass (``fast.step_masks``).

    The parametrization multiplies every masked weight by its mask in each forward and each
    backward pass: 17% of a masked LeNet-5 epoch on 2 CPU cores. Here the masks are baked into the
    weights once (pruned entries exactly zero) and applied to the gradients once per optimizer
    step. The arithmetic is the parametrization's: the forward sees W * M, the optimizer gets
    grad * M, and with a zero gradient and zero moments Adam, SGD (momentum, weight decay) and
    AdamW never move a zero weight, so the pruned entries stay exactly zero.
    ``restore`` attaches the parametrizations again.
    """

    def __init__(self, model: nn.Module) -> None:
        self.masks = current_masks(model)
        remove_masks(model)  # the same Parameter objects, now holding W * M
        layers = prunable_layers(model)
        self.weights = [layers[n].weight for n in self.masks]
        self.scales: list[torch.Tensor] = []
        self.refresh()

    def refresh(self) -> None:
        """The masks as float tensors in the weights' dtype and memory layout (call after a change)."""
        self.scales = [torch.empty_like(w).copy_(self.masks[n]) for n, w in zip(self.masks, self.weights, strict=True)]

    @torch.no_grad()
    def mask_grads_(self) -> None:
        pairs = [(w.grad, s) for w, s in zip(self.weights, self.scales, strict=True) if w.grad is not None]
        if pairs:
            torch._foreach_mul_([g for g, _ in pairs], [s for _, s in pairs])

    def restore(self, model: nn.Module) -> None:
        """Parametrize again, after checking that no pruned entry moved during the fit: re-masking
        zeroes them, so weights revived by a broken gradient mask would otherwise look sparse."""
        for name, w in zip(self.masks, self.weights, strict=True):
            moved = int(torch.count_nonzero(w.detach()[~self.masks[name].to(w.device)]))
            if moved:
                raise RevivedWeightsError(f"layer {name}: {moved} pruned weights moved away from zero "
                                          "during the fit (their gradients were not masked)")
        apply_masks(model, self.masks)  # zeroes the pruned entries again, then parametrizes


def adapt_state_dict(state: dict[str, torch.Tensor], target: nn.Module) -> None:
    """Rename, in place, masked-weight keys between the parametrized form
    (``<layer>.parametrizations.weight.original`` + ``.0.mask``) and the plain one (``<layer>.weight``)
    to the form ``target`` has: a checkpoint written with step masks resumes with parametrizations
    and the other way round. Mask buffers ``target`` does not hold are dropped; missing ones are
    taken from ``target`` (a stage's masks never change during its fit)."""
    want = target.state_dict()
    for key in list(state):
        if key in want:
            continue
        if ".parametrizations." in key:
            prefix, _, rest = key.partition(".parametrizations.")
            attr, _, tail = rest.partition(".")
            value = state.pop(key)
            if tail == "original" and f"{prefix}.{attr}" in want:
                state[f"{prefix}.{attr}"] = value
        else:
            prefix, _, attr = key.rpartition(".")
            original = f"{prefix}.parametrizations.{attr}.original"
            if original in want:
                state[original] = state.pop(key)
                for k in want:
                    if k.startswith(f"{prefix}.parametrizations.{attr}.") and k != original:
                        state[k] = want[k]
