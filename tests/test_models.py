"""The MNIST networks' options: LeNet-5's conv ReLUs, the three init schemes, and the presets
that pick the TF code's or Caffe's network and input scaling."""

from __future__ import annotations

import math

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from admm_pruning.models.layers import prunable_layers
from admm_pruning.models.lenet import LeNet5, LeNet300
from conftest import compose_cfg

MODELS = [LeNet5, LeNet300]


def pooled_conv_outputs(model: LeNet5, x: torch.Tensor) -> list[torch.Tensor]:
    """What conv2 and fc1 receive: the pooled outputs of conv1 and conv2."""
    seen: list[torch.Tensor] = []

    def grab(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        seen.append(inputs[0])

    hooks = [model.conv2.register_forward_pre_hook(grab), model.fc1.register_forward_pre_hook(grab)]
    try:
        model.eval()(x)
    finally:
        for h in hooks:
            h.remove()
    return seen


def test_conv_relu_applies_relu_after_both_convs():
    torch.manual_seed(0)
    x = torch.randn(8, 1, 28, 28)
    plain, relu = LeNet5(), LeNet5(conv_relu=True)
    relu.load_state_dict(plain.state_dict())
    without, with_relu = pooled_conv_outputs(plain, x), pooled_conv_outputs(relu, x)
    assert all((p < 0).any() for p in without)  # Caffe's LeNet pools the raw conv output
    assert all((p >= 0).all() for p in with_relu)
    pool1 = torch.max_pool2d(torch.relu(relu.conv1(x)), 2)
    assert torch.allclose(with_relu[0], pool1)
    assert not torch.allclose(plain(x), relu(x))


def test_conv_relu_matches_the_tf_order_relu_then_pool_in_values_and_gradients():
    torch.manual_seed(0)
    model = LeNet5(dropout=0.0, conv_relu=True, init="tf")
    x = torch.randn(16, 1, 28, 28)

    def tf_order(net: LeNet5) -> torch.Tensor:
        h = torch.max_pool2d(torch.relu(net.conv1(x)), 2)
        h = torch.max_pool2d(torch.relu(net.conv2(h)), 2)
        return net.fc2(torch.relu(net.fc1(h.flatten(1))))

    grads = []
    for forward in (model, tf_order):
        model.zero_grad()
        out = model(x) if forward is model else forward(model)
        out.square().sum().backward()
        grads.append((out.detach(), [p.grad.clone() for p in model.parameters()]))
    assert torch.equal(grads[0][0], grads[1][0])
    assert all(torch.equal(a, b) for a, b in zip(grads[0][1], grads[1][1], strict=True))


def test_conv_relu_keeps_layer_names_and_weight_counts():
    a, b = LeNet5(), LeNet5(conv_relu=True, init="tf")
    assert list(prunable_layers(a)) == list(prunable_layers(b)) == ["conv1", "conv2", "fc1", "fc2"]
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert sum(m.weight.numel() for m in prunable_layers(b).values()) == 430500


@pytest.mark.parametrize("cls", MODELS)
def test_tf_init_is_truncated_normal_std_01_with_bias_01(cls):
    torch.manual_seed(0)
    model = cls(init="tf")
    weights = torch.cat([m.weight.flatten() for m in prunable_layers(model).values()])
    assert weights.abs().max() <= 0.2  # tf.truncated_normal redraws beyond 2 std
    assert weights.std().item() == pytest.approx(0.1 * 0.8796, rel=0.02)  # std of N(0,1) cut at +-2
    assert weights.mean().abs() < 0.002
    for m in prunable_layers(model).values():
        assert torch.equal(m.bias, torch.full_like(m.bias, 0.1))


@pytest.mark.parametrize("cls", MODELS)
def test_caffe_init_is_xavier_fan_in_with_zero_bias(cls):
    torch.manual_seed(0)
    for name, m in prunable_layers(cls(init="caffe")).items():
        bound = math.sqrt(3.0 / (m.weight.numel() // m.weight.shape[0]))
        assert m.weight.abs().max() <= bound, name
        if m.weight.numel() > 10_000:  # uniform fills its range: not PyTorch's narrower default
            assert m.weight.abs().max() > 0.99 * bound, name
            assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02), name
        assert torch.equal(m.bias, torch.zeros_like(m.bias)), name


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("init", ["torch", "tf", "caffe"])
def test_init_is_deterministic_under_a_seed(cls, init):
    torch.manual_seed(3)
    a = cls(init=init).state_dict()
    torch.manual_seed(3)
    b = cls(init=init).state_dict()
    torch.manual_seed(4)
    c = cls(init=init).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1.weight"], c["fc1.weight"])


@pytest.mark.parametrize("cls", MODELS)
def test_inits_differ_and_torch_is_the_default(cls):
    states = {}
    for init in (None, "torch", "tf", "caffe"):
        torch.manual_seed(0)
        states[init] = (cls() if init is None else cls(init=init)).state_dict()["fc1.weight"]
    assert torch.equal(states[None], states["torch"])
    assert not torch.equal(states["torch"], states["tf"])
    assert not torch.equal(states["torch"], states["caffe"])


@pytest.mark.parametrize("cls", MODELS)
def test_unknown_init_is_refused_by_name(cls):
    with pytest.raises(ValueError, match="init='xavier'"):
        cls(init="xavier")


@pytest.mark.parametrize("data", [None, "mnist10k"])
def test_admm_71x_preset_is_the_tf_network(data):
    cfg = compose_cfg(["experiment=lenet5_admm_71x"] + ([f"data={data}"] if data else []))
    net = instantiate(cfg.model.net)
    assert isinstance(net, LeNet5) and net.conv_relu is True and cfg.model.net.init == "tf"
    assert all(torch.equal(m.bias, torch.full_like(m.bias, 0.1)) for m in prunable_layers(net).values())
    assert instantiate(cfg.data).pixel_scale == "unit"
    assert cfg.model.name == "lenet5" and cfg.experiment_name == "lenet5_admm_71x"


@pytest.mark.parametrize("experiment, cls", [("lenet5_han_12x", LeNet5), ("lenet300_han_12x", LeNet300)])
@pytest.mark.parametrize("data", [None, "mnist10k"])
def test_han_presets_are_caffe_networks(experiment, cls, data):
    cfg = compose_cfg([f"experiment={experiment}"] + ([f"data={data}"] if data else []))
    net = instantiate(cfg.model.net)
    assert isinstance(net, cls) and cfg.model.net.init == "caffe"
    assert getattr(net, "conv_relu", False) is False
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in prunable_layers(net).values())
    assert instantiate(cfg.data).pixel_scale == "caffe"
    assert cfg.model.name == f"{cls.__name__.lower()}_caffe" and cfg.experiment_name == experiment


def test_other_mnist_presets_keep_their_networks():
    for experiment in ("lenet5_admm_40x", "lenet5_progressive", "lenet5_admm_structured"):
        cfg = compose_cfg([f"experiment={experiment}", "data=mnist10k"])
        assert (cfg.model.net.conv_relu, cfg.model.net.init, cfg.data.pixel_scale) == (True, "tf", "unit")
    cfg = compose_cfg(["experiment=lenet300_admm_23x"])
    assert (cfg.model.net.init, cfg.data.pixel_scale) == ("torch", "standardize")
