from functools import partial

import pytest
import pytorch_lightning as pl
import torch

from admm_pruning.models.layers import prunable_layers
from admm_pruning.models.lenet import LeNet5
from admm_pruning.sparsity.masks import apply_masks, current_masks, magnitude_masks, plain_state_dict
from admm_pruning.training.modules import ClassifierModule

KEEP = {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009, "fc2": 0.07}


def masked_lenet5(seed: int = 0) -> tuple[LeNet5, dict[str, torch.Tensor]]:
    torch.manual_seed(seed)
    model = LeNet5()
    masks = magnitude_masks(model, KEEP)
    apply_masks(model, masks)
    return model, masks


def assert_masked(model: LeNet5, masks: dict[str, torch.Tensor]) -> None:
    for name, layer in prunable_layers(model).items():
        if name in masks:
            assert torch.count_nonzero(layer.weight[~masks[name]]) == 0, name
            assert torch.count_nonzero(layer.parametrizations.weight.original[~masks[name]]) == 0, name


@pytest.mark.parametrize("make_opt", [
    partial(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=1e-3),
    partial(torch.optim.Adam, lr=1e-2, weight_decay=1e-3),
    partial(torch.optim.AdamW, lr=1e-2),
])
def test_masks_survive_optimizer_steps_with_momentum(make_opt):
    model, masks = masked_lenet5()
    opt = make_opt(model.parameters())
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    for _ in range(5):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        for name, mask in masks.items():
            grad = model.get_submodule(name).parametrizations.weight.original.grad
            assert torch.count_nonzero(grad[~mask]) == 0
        opt.step()
    assert_masked(model, masks)
    for name, mask in masks.items():  # the kept weights did train
        assert torch.count_nonzero(model.get_submodule(name).weight) == int(mask.sum())


def test_state_dict_round_trip_keeps_masks_and_plain_weights_load_without_the_suite():
    model, masks = masked_lenet5(seed=1)
    other, _ = masked_lenet5(seed=2)
    other.load_state_dict(model.state_dict())
    for name, mask in current_masks(other).items():
        assert torch.equal(mask, masks[name])
    plain = LeNet5()
    plain.load_state_dict(plain_state_dict(model))
    x = torch.randn(4, 1, 28, 28)
    model.eval(), plain.eval()
    assert torch.allclose(plain(x), model(x))
    assert torch.count_nonzero(plain.fc1.weight) == int(masks["fc1"].sum())


def test_masks_survive_lightning_checkpoint_and_resume(tmp_path):
    x, y = torch.randn(200, 1, 28, 28), torch.randint(0, 10, (200,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=50)
    kwargs = dict(accelerator="cpu", logger=False, enable_progress_bar=False,
                  enable_model_summary=False, default_root_dir=tmp_path)
    model, masks = masked_lenet5()
    module = ClassifierModule(model, partial(torch.optim.Adam, lr=1e-2))
    trainer = pl.Trainer(max_epochs=1, **kwargs)
    trainer.fit(module, loader)
    ckpt = tmp_path / "a.ckpt"
    trainer.save_checkpoint(ckpt)

    fresh = LeNet5()  # restored into a model that has masks from elsewhere: the checkpoint wins
    apply_masks(fresh, magnitude_masks(LeNet5(), KEEP))
    resumed = ClassifierModule(fresh, partial(torch.optim.Adam, lr=1e-2))
    pl.Trainer(max_epochs=3, **kwargs).fit(resumed, loader, ckpt_path=ckpt)
    restored = current_masks(fresh)
    for name, mask in masks.items():
        assert torch.equal(restored[name], mask)
    assert_masked(fresh, masks)


@pytest.mark.parametrize("masking", [True, False])
def test_a_fit_whose_gradient_masking_fails_is_caught_before_the_masks_hide_it(masking, monkeypatch):
    """With step masks the pruned entries are re-zeroed when the fit ends; if gradient masking
    broke, weights would revive during training and still look sparse afterwards. The teardown
    checks that no pruned entry moved before it re-masks."""
    from admm_pruning.sparsity.masks import RevivedWeightsError, StepMasks
    from admm_pruning.training.fast import FastPath

    if not masking:
        monkeypatch.setattr(StepMasks, "mask_grads_", lambda self: None)
    x, y = torch.randn(100, 1, 28, 28), torch.randint(0, 10, (100,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=50)
    model, masks = masked_lenet5()
    module = ClassifierModule(model, partial(torch.optim.Adam, lr=1e-2))
    module.fast = FastPath(False, False, True, 1)
    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False)
    if masking:
        trainer.fit(module, loader)
        assert_masked(model, masks)
    else:
        with pytest.raises(RevivedWeightsError, match="pruned weights moved away from zero"):
            trainer.fit(module, loader)
