"""Physical shrinking: a structurally pruned model becomes a smaller dense model.

Masks only zero weights; the compute stays dense. Here the model is traced (torch.fx) into a
chain of plain torch layers, and every output unit (filter, or Linear row) that is dead (all
its weights zero) or unused (the next layer's weights on it all zero) is deleted, together
with its bias, its BatchNorm entries and the next layer's inputs it fed (C x H x W inputs
of a Linear after a flatten). A dead unit still outputs a constant (its bias through the
activations); that constant times the next layer's deleted weights is folded into the next
layer's bias, so the small model computes what the masked one does. Inputs a Linear (or the
first conv) never uses are dropped by a ``Select`` in front of it.

Only chains are shrunk (each op feeds just the next one); anything else raises ShrinkError
rather than a silently wrong model. A grouped conv (CaffeNet's towers) keeps its filters and
inputs, and so does its neighbour on each side, as does a layer whose outputs pass through a
LocalResponseNorm (it mixes neighbouring channels); the other layers still shrink. The result
is a JSON config (layer list) plus a plain state dict, which ``build_model`` / ``load_shrunk``
turn back into an ``nn.Sequential`` using torch alone.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn

from admm_pruning.export.layers import FORMAT, LAYER_TYPES, load_model


class ShrinkError(ValueError):
    """The model is not a chain of layers this module can shrink exactly."""


PRUNABLE = ("Conv2d", "Linear")
PER_CHANNEL = ("ReLU", "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "BatchNorm1d", "BatchNorm2d", "Flatten")
ACROSS_CHANNELS = ("LocalResponseNorm",)  # between two layers: the producer keeps all its units
_IN = {"Conv2d": "in_channels", "Linear": "in_features"}
_OUT = {"Conv2d": "out_channels", "Linear": "out_features"}


def _call_args(node: fx.Node, names: tuple[str, ...], defaults: dict[str, Any]) -> dict[str, Any]:
    """A functional call's arguments after the input tensor, by name."""
    args = {**defaults, **dict(zip(names, node.args[1:], strict=False)), **node.kwargs}
    if any(isinstance(v, fx.Node) for v in args.values()):
        raise ShrinkError(f"{node.name}: arguments computed at run time are not supported")
    return args


def _layer(gm: fx.GraphModule, node: fx.Node) -> tuple[str, dict[str, Any], nn.Module | None] | None:
    """(type, constructor args, source module) of a node; None for ops that are identities at
    inference (dropout, identity)."""
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        if isinstance(m, (nn.Dropout, nn.Identity)):
            return None
        if isinstance(m, nn.Conv2d) and m.padding_mode == "zeros":
            return "Conv2d", {"in_channels": m.in_channels, "out_channels": m.out_channels,
                              "kernel_size": list(m.kernel_size), "stride": list(m.stride),
                              "padding": m.padding if isinstance(m.padding, str) else list(m.padding),
                              "dilation": list(m.dilation), "bias": m.bias is not None,
                              **({"groups": m.groups} if m.groups != 1 else {})}, m
        if isinstance(m, nn.LocalResponseNorm):
            return "LocalResponseNorm", {k: getattr(m, k) for k in ("size", "alpha", "beta", "k")}, None
        if isinstance(m, nn.Linear):
            return "Linear", {"in_features": m.in_features, "out_features": m.out_features,
                              "bias": m.bias is not None}, m
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            return type(m).__name__, {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum,
                                      "affine": m.affine, "track_running_stats": m.track_running_stats}, m
        if isinstance(m, nn.ReLU):
            return "ReLU", {}, None
        if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)):
            names = {nn.MaxPool2d: ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
                     nn.AvgPool2d: ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                    "divisor_override"),
                     nn.AdaptiveAvgPool2d: ("output_size",),
                     nn.Flatten: ("start_dim", "end_dim")}[type(m)]
            return type(m).__name__, {k: getattr(m, k) for k in names}, None
        raise ShrinkError(f"{node.target}: {type(m).__name__} layers are not supported "
                          f"(supported: {', '.join(LAYER_TYPES)}, Dropout, Identity)")
    target = node.target
    if target in (torch.relu, F.relu, "relu"):
        return "ReLU", {}, None
    if target in (torch.max_pool2d, F.max_pool2d):
        a = _call_args(node, ("kernel_size", "stride", "padding", "dilation", "ceil_mode"),
                       {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False})
        return "MaxPool2d", {**a, "stride": a["stride"] or None}, None  # torch.max_pool2d's stride=[]
    if target is F.avg_pool2d:
        return "AvgPool2d", _call_args(node, ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                                              "divisor_override"), {}), None
    if target in (torch.flatten, "flatten"):
        return "Flatten", _call_args(node, ("start_dim", "end_dim"), {"start_dim": 0, "end_dim": -1}), None
    if target is F.dropout:
        return None
    raise ShrinkError(f"{node.name}: op {getattr(target, '__name__', target)} is not supported")


@dataclass
class Chain:
    """A model as a layer list (JSON-able) and a state dict keyed by those layers' names."""

    layers: list[dict[str, Any]]
    state: dict[str, torch.Tensor]


def trace_chain(model: nn.Module) -> Chain:
    """The model's forward pass as a chain of plain torch layers with its (effective) weights."""
    try:
        gm = fx.symbolic_trace(model)
    except Exception as exc:  # data-dependent control flow and the like: fx's many error types
        raise ShrinkError(f"torch.fx cannot trace {type(model).__name__}: {exc}") from exc
    layers: list[dict[str, Any]] = []
    state: dict[str, torch.Tensor] = {}
    prev: fx.Node | None = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise ShrinkError(f"{node.name}: only single-input models can be shrunk")
            prev = node
            continue
        if not node.args or node.args[0] is not prev or len(prev.users) != 1:
            raise ShrinkError(f"{node.name}: the model is not a chain (each op must feed only the next)")
        prev = node
        if node.op == "output":
            break
        found = _layer(gm, node)
        if found is None:
            continue
        kind, args, source = found
        layers.append({"name": node.name, "type": kind, "args": args, "module": str(node.target)}
                      if source is not None else {"name": node.name, "type": kind, "args": args})
        if source is not None:  # .weight is the masked weight when a mask is attached
            for attr in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                t = getattr(source, attr, None)
                if t is not None:
                    state[f"{node.name}.{attr}"] = t.detach().clone().cpu()
    return Chain(layers, state)


# -- shrinking ---------------------------------------------------------------------------------

@dataclass
class Shrunk:
    """The small model's JSON config and state dict, and what was kept of each pruned layer."""

    config: dict[str, Any]
    state: dict[str, torch.Tensor]
    # source layer -> {"out": [kept, total], "in": [kept, total]} (+ "columns" for a ColumnConv2d)
    kept: dict[str, dict[str, list[int]]]

    def module(self) -> nn.Sequential:
        return load_model(self.config, self.state)

    def save(self, folder: Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.json").write_text(json.dumps(self.config, indent=2) + "\n")
        torch.save(self.state, folder / "weights.pt")


def _slice(state: dict[str, torch.Tensor], name: str, attrs: tuple[str, ...], dim: int,
           index: torch.Tensor) -> None:
    for attr in attrs:
        key = f"{name}.{attr}"
        if key in state:
            state[key] = state[key].index_select(dim, index).clone()


def _grouped(layer: dict[str, Any]) -> bool:
    return layer["args"].get("groups", 1) != 1


def _has_padding(layer: dict[str, Any]) -> bool:
    p = layer["args"].get("padding", 0)
    return p != "valid" and (isinstance(p, str) or any(p))


def _to_columns(layer: dict[str, Any], state: dict[str, torch.Tensor], min_saving: float) -> list[int] | None:
    """Turn a conv whose im2col weight has at least ``min_saving`` of its columns all zero into a
    ColumnConv2d over the other columns (in place); returns [kept, total] columns, or None."""
    args, key = layer["args"], f"{layer['name']}.weight"
    if isinstance(args["padding"], str):
        return None  # "same" / "valid": left to nn.Conv2d
    w = state[key].reshape(state[key].shape[0], -1)
    used = torch.count_nonzero(w, dim=0) > 0
    if not used.any():
        used[0] = True
    if 1 - used.float().mean().item() < min_saving:
        return None
    index = used.nonzero().flatten()
    state[key] = w.index_select(1, index).clone()
    layer["type"], layer["args"] = "ColumnConv2d", {**args, "columns": index.tolist()}
    return [len(index), w.shape[1]]


def _chain_inputs(model: nn.Module, chain: Chain, example: torch.Tensor, atol: float) -> list[torch.Tensor]:
    """The input of every layer of the traced chain on a probe batch, after checking that the
    chain reproduces the model's output."""
    was_training = model.training
    model.eval()
    probe = torch.randn((2, *example.shape[1:]), generator=torch.Generator().manual_seed(0), dtype=example.dtype)
    device = next(model.parameters()).device
    inputs = []
    with torch.no_grad():
        reference = model(probe.to(device)).cpu()
        x = probe
        for m in load_model({"layers": chain.layers}, chain.state):
            inputs.append(x)
            x = m(x)
    model.train(was_training)
    if x.shape != reference.shape or not torch.allclose(x, reference, atol=atol, rtol=1e-4):
        raise ShrinkError("the traced layer chain does not reproduce the model's output")
    return inputs


def _remove_units(layers: list[dict[str, Any]], state: dict[str, torch.Tensor], i: int, j: int,
                  consumer_input: torch.Tensor, atol: float) -> tuple[int, int]:
    """Delete producer i's dead or unused output units (and consumer j's inputs from them),
    folding a dead unit's constant output into j's bias; returns (kept, total) units."""
    p, c = layers[i]["name"], layers[j]["name"]
    between = layers[i + 1:j]
    units = state[f"{p}.weight"].shape[0]
    if any(_grouped(layers[k]) for k in (i, j)) or any(b["type"] in ACROSS_CHANNELS for b in between):
        return units, units  # a grouped conv's towers must stay equal; LRN mixes neighbouring channels
    if any(b["type"] not in PER_CHANNEL or b["args"].get("start_dim", 1) != 1
           or b["args"].get("end_dim", -1) != -1 for b in between):
        raise ShrinkError(f"{p} -> {c}: only per-channel ops ({', '.join(PER_CHANNEL)}; flatten from "
                          "dim 1) may sit between two layers")
    wp, wc = state[f"{p}.weight"], state[f"{c}.weight"]
    if wc.shape[1] % units or consumer_input.dim() != wc.dim():
        raise ShrinkError(f"{p} -> {c}: {c}'s inputs do not line up with {p}'s outputs")
    wc3 = wc.reshape(wc.shape[0], units, -1)  # consumer inputs grouped by producer unit
    act = consumer_input.reshape(consumer_input.shape[0], units, -1)
    const = act.mean(dim=(0, 2))
    constant = (act - const[None, :, None]).abs().amax(dim=(0, 2)) <= atol * (1 + const.abs())
    dead = (torch.count_nonzero(wp.reshape(units, -1), dim=1) == 0) & constant
    if layers[j]["type"] == "Conv2d" and _has_padding(layers[j]):
        dead &= const == 0  # a padded conv sees the constant with zero borders: not a bias
    remove = dead | (torch.count_nonzero(wc3, dim=(0, 2)) == 0)
    if remove.all():
        remove[0] = False  # a layer keeps at least one unit
    keep = (~remove).nonzero().flatten()
    delta = (wc3[:, remove] * const[remove][None, :, None]).sum(dim=(1, 2))  # zero for unused units
    if delta.any():
        state[f"{c}.bias"] = state.get(f"{c}.bias", torch.zeros_like(delta)) + delta
        layers[j]["args"]["bias"] = True
    _slice(state, p, ("weight", "bias"), 0, keep)
    for b in between:
        if b["type"].startswith("BatchNorm"):
            _slice(state, b["name"], ("weight", "bias", "running_mean", "running_var"), 0, keep)
            b["args"]["num_features"] = len(keep)
    state[f"{c}.weight"] = wc3[:, keep].reshape(wc.shape[0], -1, *wc.shape[2:]).clone()
    layers[i]["args"][_OUT[layers[i]["type"]]] = len(keep)
    layers[j]["args"][_IN[layers[j]["type"]]] = state[f"{c}.weight"].shape[1]
    return len(keep), units


def _select_inputs(layer: dict[str, Any], state: dict[str, torch.Tensor], kept: dict[str, Any],
                   min_column_saving: float) -> dict[str, Any] | None:
    """Inputs a layer never uses (e.g. pruned columns of a Linear after the flatten) are selected
    away by a ``Select`` in front of it (returned); a conv may become a ``ColumnConv2d``."""
    name, args = layer["name"], layer["args"]
    w = state[f"{name}.weight"]
    if _grouped(layer):  # its inputs split into towers: none can be selected away
        kept["in"] = [args["in_channels"]] * 2
        return None
    used = torch.count_nonzero(w.reshape(w.shape[0], w.shape[1], -1), dim=(0, 2)) > 0
    if not used.any():
        used[0] = True
    key = _IN[layer["type"]]
    kept["in"] = [int(used.sum()), args[key]]
    select = None
    if not used.all():
        index = used.nonzero().flatten()
        select = {"name": f"{name}_select", "type": "Select", "args": {"index": index.tolist()}}
        state[f"{name}.weight"] = w.index_select(1, index).clone()
        args[key] = len(index)
    if layer["type"] == "Conv2d":
        columns = _to_columns(layer, state, min_column_saving)
        if columns:
            kept["columns"] = columns
    return select


def shrink(model: nn.Module, example: torch.Tensor, atol: float = 1e-5, min_column_saving: float = 0.25) -> Shrunk:
    """Shrink ``model`` (masked or with zeroed weights) to a smaller dense model, on the CPU.

    ``example`` is one input batch; it fixes the feature-map sizes and, for dead units, the
    constant each one outputs. A conv left with at least ``min_column_saving`` of its (c, kh, kw)
    columns unused (shape-wise sparsity) becomes a ``ColumnConv2d`` over the used ones; 0 turns
    every conv into one (the dense baseline with the same kernels), above 1 none.
    """
    chain = trace_chain(model)
    inputs = _chain_inputs(model, chain, example, atol)
    layers, state = chain.layers, chain.state
    prunable = [i for i, layer in enumerate(layers) if layer["type"] in PRUNABLE]
    kept = {layers[i]["module"]: {"out": [state[f"{layers[i]['name']}.weight"].shape[0]] * 2} for i in prunable}
    for i, j in zip(prunable, prunable[1:], strict=False):
        kept[layers[i]["module"]]["out"] = list(_remove_units(layers, state, i, j, inputs[j], atol))
    selects = {i: _select_inputs(layers[i], state, kept[layers[i]["module"]], min_column_saving) for i in prunable}
    out = []
    for i, layer in enumerate(layers):
        if selects.get(i):
            out.append(selects[i])
        out.append(layer)
    config = {"format": FORMAT, "input_shape": list(example.shape[1:]), "layers": out}
    return Shrunk(config, state, kept)
