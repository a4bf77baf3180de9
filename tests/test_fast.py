"""The fast path (training/fast.py): channels-last convolutions and fused optimizer kernels
change the kernels, never the math, and leave no trace outside the fit."""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from admm_pruning.data.mnist import MNISTData
from admm_pruning.models.lenet import LeNet5
from admm_pruning.sparsity.masks import apply_masks, current_masks, magnitude_masks
from admm_pruning.training.context import StageContext
from admm_pruning.training.fast import (
    NVML_CHECK,
    FastPath,
    build_optimizer,
    match_state_layout,
    set_memory_format,
    skip_gpu_probe_without_gpu,
)
from admm_pruning.training.modules import ClassifierModule
from conftest import compose_cfg

KEEP = {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}


def lenet(masked: bool = False) -> LeNet5:
    torch.manual_seed(0)
    model = LeNet5(dropout=0.0, conv_relu=True, init="tf")
    if masked:
        apply_masks(model, magnitude_masks(model, KEEP))
    return model


def test_adam_and_sgd_are_fused_unless_the_config_chose_an_implementation():
    params = list(lenet().parameters())
    assert build_optimizer(partial(torch.optim.Adam, lr=1e-3), params, True).defaults["fused"] is True
    assert build_optimizer(partial(torch.optim.SGD, lr=0.1, momentum=0.9), params, True).defaults["fused"] is True
    assert not build_optimizer(partial(torch.optim.Adam, lr=1e-3), params, False).defaults["fused"]
    chosen = build_optimizer(partial(torch.optim.Adam, lr=1e-3, foreach=False), params, True)
    assert not chosen.defaults["fused"] and chosen.defaults["foreach"] is False
    assert not build_optimizer(partial(torch.optim.RMSprop, lr=1e-3), params, True).defaults.get("fused")


def test_fused_adam_follows_the_for_loop_adam():
    x, y = torch.rand(50, 1, 28, 28), torch.randint(0, 10, (50,))
    out = []
    for fused in (False, True):
        model = lenet()
        opt = build_optimizer(partial(torch.optim.Adam, lr=1e-3), model.parameters(), fused)
        for _ in range(5):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        out.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.allclose(out[0], out[1], atol=1e-6)


def test_channels_last_gives_the_gradients_of_nchw_on_a_masked_model():
    x, y = torch.rand(50, 1, 28, 28), torch.randint(0, 10, (50,))
    grads = []
    for channels_last in (False, True):
        model = lenet(masked=True)
        set_memory_format(model, channels_last)
        F.cross_entropy(model(x), y).backward()
        grads.append({n: p.grad.clone() for n, p in model.named_parameters()})
    for name, g in grads[0].items():
        assert torch.allclose(g, grads[1][name], rtol=1e-4, atol=1e-6 * g.abs().max().item()), name


def test_a_masked_single_channel_conv_keeps_its_channels_last_strides():
    """conv1 has one input channel, where both layouts are the same memory: the masked weight
    must come back with the parameter's NHWC strides, or the convolution runs in NCHW (the
    masked step measured 40% slower than the dense one)."""
    model = lenet(masked=True)
    set_memory_format(model, True)
    original = model.conv1.parametrizations.weight.original
    assert model.conv1.weight.stride() == original.stride() == (25, 1, 5, 1)
    out = F.conv2d(torch.rand(2, 1, 28, 28), model.conv1.weight)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.equal(model.conv1.weight, original * model.conv1.parametrizations.weight[0].mask)


def test_optimizer_state_takes_its_parameters_layout_before_a_fused_step():
    """A fused kernel given moments in another layout than the parameter silently computes
    nonsense (measured: 0.17 off after one step); a checkpoint resumed across layouts does that."""
    torch.manual_seed(0)
    g = torch.randn(4, 3, 5, 5)
    ref = torch.nn.Parameter(torch.randn(4, 3, 5, 5))
    p = torch.nn.Parameter(ref.detach().contiguous(memory_format=torch.channels_last).clone())
    ref_opt = torch.optim.Adam([ref], lr=0.1)
    opt = torch.optim.Adam([p], lr=0.1, fused=True)
    for step in range(2):
        ref.grad, p.grad = g.clone(), g.contiguous(memory_format=torch.channels_last)
        if step == 1:  # the state as a checkpoint written in NCHW restores it
            for key in ("exp_avg", "exp_avg_sq"):
                opt.state[p][key] = opt.state[p][key].contiguous()
            match_state_layout(opt)
            assert opt.state[p]["exp_avg"].stride() == p.stride()
        ref_opt.step()
        opt.step()
    assert torch.allclose(p.detach(), ref.detach(), atol=1e-6)


def _data(fake_data_dir: Path) -> MNISTData:
    return MNISTData("mnist", str(fake_data_dir / "mnist"), val_size=200, verify_md5=False, download=False,
                     pixel_scale="unit").setup()


def _fit(module: ClassifierModule, data: MNISTData, fast: FastPath, stage_dir: Path, epochs: int = 1,
         resume: Path | None = None) -> None:
    ctx = StageContext(data=data, trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False,
                                                  "enable_model_summary": False}, seed=0, experiment="t", fast=fast)
    ctx.fit(module, "t", stage_dir, resume, 50, max_epochs=epochs)


def test_a_fit_trains_in_channels_last_with_step_masks_and_hands_back_the_masked_nchw_model(fake_data_dir, tmp_path):
    model = lenet(masked=True)
    masks = current_masks(model)
    seen = []

    class Spy(ClassifierModule):
        def training_step(self, batch, batch_idx):
            w = self.model.conv2.weight
            seen.append((w.is_contiguous(), hasattr(self.model.conv2, "parametrizations"),
                         bool((w[~masks["conv2"]] == 0).all())))
            return super().training_step(batch, batch_idx)

    module = Spy(model, partial(torch.optim.Adam, lr=1e-3), l2=5e-5)
    _fit(module, _data(fake_data_dir), FastPath(), tmp_path)
    # inside the fit: NHWC, no parametrization, and every pruned entry exactly zero at every step
    assert seen and set(seen) == {(False, False, True)}
    assert all(p.is_contiguous() for p in model.parameters())  # NCHW after it
    assert all(torch.equal(masks[n], m) for n, m in current_masks(model).items()) and len(current_masks(model)) == 4
    assert all(not (getattr(model, n).weight[~m]).any() for n, m in masks.items())
    assert module.trainer.optimizers[0].defaults["fused"] is True


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="the probe stays where a GPU exists")
def test_a_fit_without_a_gpu_drops_the_per_step_nvml_probe(fake_data_dir, tmp_path, monkeypatch):
    """Lightning sets the variable on import; with it, every Adam step of a CUDA build loads NVML."""
    monkeypatch.setenv(NVML_CHECK, "1")
    calls = []
    probe = torch.cuda.device_count
    monkeypatch.setattr(torch.cuda, "device_count", lambda: calls.append(1) or probe())
    module = ClassifierModule(lenet(masked=False), partial(torch.optim.Adam, lr=1e-3))
    _fit(module, _data(fake_data_dir), FastPath(), tmp_path)
    assert NVML_CHECK not in os.environ
    steps = module.trainer.global_step
    assert steps > 2 and len(calls) < steps  # at most a few probes in the fit, not one per step


def test_the_nvml_probe_stays_where_a_gpu_exists(monkeypatch):
    """It guards forked workers against an initialised CUDA driver: only a GPU-less machine drops it."""
    monkeypatch.setenv(NVML_CHECK, "1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert skip_gpu_probe_without_gpu() is False and os.environ[NVML_CHECK] == "1"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert skip_gpu_probe_without_gpu() is True and NVML_CHECK not in os.environ


@pytest.mark.parametrize("admm", [False, True])
def test_step_masks_train_bit_for_bit_as_the_parametrization(fake_data_dir, tmp_path, admm):
    """Same kernels otherwise (NCHW, for-loop Adam): the two ways of masking give identical weights,
    for masked retraining and for ADMM on a masked model (progressive rounds)."""
    from admm_pruning.pruners.admm import ADMMModule
    from admm_pruning.sparsity.admm import ADMMSchedule
    from admm_pruning.sparsity.masks import plain_state_dict

    data, out = _data(fake_data_dir), []
    for step_masks in (False, True):
        model = lenet(masked=True)
        opt = partial(torch.optim.Adam, lr=1e-3)
        if admm:
            schedule = ADMMSchedule(optimizer=opt, iterations=2, epochs_per_iteration=0.5, rho=1e-2, l2=5e-5)
            module = ADMMModule(model, schedule, {"conv2": 0.04, "fc1": 0.005}, data.steps_per_epoch(50))
        else:
            module = ClassifierModule(model, opt, l2=5e-5)
        _fit(module, data, FastPath(False, False, step_masks), tmp_path / str(step_masks))
        out.append(plain_state_dict(model))
    assert out[0].keys() == out[1].keys()
    assert all(torch.equal(out[0][k], out[1][k]) for k in out[0])


def test_a_checkpoint_resumes_across_masking_modes(fake_data_dir, tmp_path):
    """A stage interrupted under one way of masking resumes under the other: the weight keys are
    renamed between `<layer>.weight` and `<layer>.parametrizations.weight.original`."""
    data = _data(fake_data_dir)
    for first, second in ((True, False), (False, True)):
        d = tmp_path / f"{first}"
        _fit(ClassifierModule(lenet(masked=True), partial(torch.optim.Adam, lr=1e-3)), data,
             FastPath(False, False, first), d)
        model = lenet(masked=True)
        _fit(ClassifierModule(model, partial(torch.optim.Adam, lr=1e-3)), data, FastPath(False, False, second),
             tmp_path / f"{first}-resumed", epochs=2, resume=d / "checkpoints" / "last.ckpt")
        assert len(current_masks(model)) == 4
        saved = torch.load(d / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        key = "model.fc1.weight" if first else "model.fc1.parametrizations.weight.original"
        assert key in saved  # the checkpoint really was written in the first mode


@pytest.mark.parametrize("node", ["channels_last", "fused_optimizer"])
def test_the_fast_path_is_on_by_default_and_outside_every_stage_key(node):
    from admm_pruning.pipeline import context_key
    on = compose_cfg(["experiment=lenet5_admm_71x"])
    off = compose_cfg(["experiment=lenet5_admm_71x", f"fast.{node}=false"])
    assert on.fast[node] is True
    assert context_key(on) == context_key(off)
