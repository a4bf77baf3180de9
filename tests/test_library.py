"""ADMM for anyone's model: the Lightning callback and the plain-PyTorch API on a module that is
not a classifier (a regression loss, dict batches), checked against the gradient formula, the
update schedule, the hard prune, checkpoints and N:M masks."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.plugins.precision import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader

from admm_pruning import ADMM, ADMMPruning, ADMMSchedule, apply_masks
from admm_pruning.sparsity.masks import current_masks
from admm_pruning.sparsity.projections import nm_mask

RHO, L2 = 0.5, 1e-2
KEEP = {"net.0": 0.25, "net.2": 0.5}


class Regressor(pl.LightningModule):
    """A user's module: MSE on dict batches, nothing from the suite."""

    def __init__(self, optimizer=None, manual: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
        self.optimizer = optimizer or (lambda p: torch.optim.SGD(p, lr=0.05))
        self.automatic_optimization = not manual
        self.batches: list = []

    def loss(self, batch):
        return F.mse_loss(self.net(batch["x"]), batch["y"])

    def training_step(self, batch, batch_idx):
        self.batches.append(batch)
        if self.automatic_optimization:
            return self.loss(batch)
        opt = self.optimizers()
        for _ in range(3):  # several optimizer steps per batch, as the suite's chunked loop makes
            opt.zero_grad()
            self.manual_backward(self.loss(batch))
            opt.step()
        return None

    def configure_optimizers(self):
        return self.optimizer(self.parameters())


def data(n: int = 64, batch: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, 8, generator=g)
    items = [{"x": x[i], "y": torch.sin(x[i, :4])} for i in range(n)]
    return DataLoader(items, batch_size=batch)


def trainer(**kw) -> pl.Trainer:
    return pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **kw)


def recorder(module: Regressor, cb: ADMMPruning, steps: list, fused: bool = False):
    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            if closure is not None:
                with torch.enable_grad():
                    closure()
            scale = getattr(self, "grad_scale", None)
            scale = 1.0 if scale is None else float(scale)
            st = cb.admm.state
            steps.append({n: {"grad": module.get_submodule(n).weight.grad / scale,
                              "w": module.get_submodule(n).weight.detach().clone(),
                              "z": st.z(n).clone(), "u": st.u(n).clone(), "rho": float(st.rho)} for n in KEEP}
                         | {"_state": {k: v.clone() for k, v in module.net.state_dict().items()},
                            "_batch": module.batches[-1]})
            return super().step()

    return lambda p: RecordingSGD(p, lr=0.05, fused=fused or None)


@pytest.mark.parametrize("precision, fused, tol", [("32-true", False, 1e-6), ("16-mixed", False, 0.05),
                                                   ("16-mixed", True, 0.05), ("bf16-mixed", False, 0.05)])
def test_the_callback_applies_task_plus_l2_plus_rho_times_residual(precision, fused, tol):
    steps: list = []
    schedule = ADMMSchedule(rho=RHO, l2=L2, iterations=100)
    cb = ADMMPruning(KEEP, schedule, update_every=2)
    module = Regressor()
    module.optimizer = recorder(module, cb, steps, fused)
    amp = {"plugins": [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))]} \
        if precision == "16-mixed" else {"precision": precision}
    trainer(max_steps=5, callbacks=[cb], **amp).fit(module, data())
    assert len(steps) == 5
    for s in steps:
        net = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
        net.load_state_dict(s["_state"])
        loss = F.mse_loss(net(s["_batch"]["x"]), s["_batch"]["y"])
        for n in KEEP:
            r = s[n]
            task = torch.autograd.grad(loss, net.get_submodule(n.removeprefix("net.")).weight, retain_graph=True)[0]
            added = L2 * r["w"] + r["rho"] * (r["w"] - r["z"] + r["u"])  # 2 * rho_scale (0.5) * rho
            error = r["grad"] - task - added
            assert error.norm() <= tol * added.norm() + 1e-7, (precision, fused, n)
    assert [h["iteration"] for h in cb.admm.history] == [1, 2]  # after optimizer steps 2 and 4


@pytest.mark.parametrize("manual, accumulate", [(False, 2), (True, 1)])
def test_z_u_updates_follow_optimizer_steps_in_any_loop(manual, accumulate):
    """Every 4th optimizer step: with accumulation (2 batches a step) and with 3 steps per batch."""
    cb = ADMMPruning(KEEP, ADMMSchedule(rho=RHO, iterations=100), update_every=4)
    module = Regressor(manual=manual)
    seen = []
    module.on_train_batch_end = lambda *a: seen.append((module.trainer.global_step, int(cb.admm.state.iteration)))
    trainer(max_epochs=1, accumulate_grad_batches=accumulate, callbacks=[cb]).fit(module, data())
    steps = cb.admm.steps
    assert steps == (24 if manual else 4) and int(cb.admm.state.iteration) == steps // 4
    assert all(it == g // 4 for g, it in seen)


def test_the_hard_prune_keeps_exact_counts_and_the_masks_hold_through_a_later_fit():
    cb = ADMMPruning(KEEP, ADMMSchedule(rho=RHO, iterations=3), update_every=2)
    module = Regressor()
    trainer(max_epochs=2, callbacks=[cb]).fit(module, data())  # 16 steps: ADMM done at step 6, then masked
    masks = current_masks(module)
    assert {n: int(m.sum()) for n, m in masks.items()} == {"net.0": 32, "net.2": 32}
    before = {n: module.get_submodule(n).weight.detach().clone() for n in KEEP}
    trainer(max_epochs=1).fit(module, data())  # a later fit: plain retraining of the masked module
    for n, m in masks.items():
        w = module.get_submodule(n).weight.detach()
        assert torch.count_nonzero(w[~m]) == 0 and not torch.equal(w, before[n])


def test_a_checkpoint_resumes_the_admm_state_and_the_masks(tmp_path):
    def fresh():
        return ADMMPruning(KEEP, ADMMSchedule(rho=RHO, iterations=3), update_every=2), Regressor()

    cb, module = fresh()
    t = trainer(max_steps=4, callbacks=[cb])
    t.fit(module, data())  # updates after steps 2 and 4; the third is due at step 6
    t.save_checkpoint(tmp_path / "mid.ckpt")
    cb2, module2 = fresh()
    trainer(max_steps=4, callbacks=[cb2]).fit(module2, data(), ckpt_path=tmp_path / "mid.ckpt")
    assert cb2.admm.steps == 4 and [h["iteration"] for h in cb2.admm.history] == [1, 2]
    for n in KEEP:
        assert torch.equal(cb2.admm.state.z(n), cb.admm.state.z(n))
        assert torch.equal(cb2.admm.state.u(n), cb.admm.state.u(n))
    t3 = trainer(max_steps=10, callbacks=[cb2])
    t3.fit(module2, data(), ckpt_path=tmp_path / "mid.ckpt")
    assert cb2.admm.steps == 6 and cb2.masks is not None  # the third update at step 6, then the hard prune
    t3.save_checkpoint(tmp_path / "pruned.ckpt")
    cb4, plain = fresh()
    trainer(max_steps=11, callbacks=[cb4]).fit(plain, data(), ckpt_path=tmp_path / "pruned.ckpt")
    for n, m in cb2.masks.items():  # restored into an unmasked module: masked again, still sparse
        assert torch.equal(current_masks(plain)[n], m)
        assert torch.count_nonzero(plain.get_submodule(n).weight[~m]) == 0


def test_n_m_masks_keep_exactly_n_of_every_m_and_are_the_euclidean_projection():
    w = torch.randn(6, 16, generator=torch.Generator().manual_seed(0))
    mask = nm_mask(w, 2, 4)
    assert (mask.reshape(-1, 4).sum(1) == 2).all()
    groups, kept = w.abs().reshape(-1, 4), (w * mask).abs().reshape(-1, 4)
    top2 = groups.sort(dim=1, descending=True).values[:, :2].sum(1)
    assert torch.allclose(kept.sum(1), top2)
    ties = nm_mask(torch.ones(1, 8), 2, 4)  # ties: the lower indices, deterministic
    assert ties.tolist() == [[True, True, False, False, True, True, False, False]]


def test_the_plain_api_in_a_users_loop():
    """penalize_ adds rho (W - Z + U) (l2 off), step() updates every k steps, hard_prune gives
    exact counts; the same object the callback drives."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    admm = ADMM(model, 4.0, ADMMSchedule(rho=RHO, l2=0.0, iterations=2), update_every=3)
    assert admm.keep == {"0": pytest.approx(0.25, abs=0.01), "2": pytest.approx(0.25, abs=0.01)}
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for batch in data():
        opt.zero_grad()
        F.mse_loss(model(batch["x"]), batch["y"]).backward()
        task = model[0].weight.grad.clone()
        admm.penalize_()
        w, z, u = model[0].weight.detach(), admm.state.z("0"), admm.state.u("0")
        assert torch.allclose(model[0].weight.grad, task + RHO * (w - z + u), atol=1e-6)
        opt.step()
        admm.step()
    assert admm.steps == 6 and int(admm.state.iteration) == 2 and admm.done  # steps stop counting when done
    masks = admm.hard_prune()
    apply_masks(model, masks)
    assert sum(int(m.sum()) for m in masks.values()) == round((128 + 64) / 4.0)


def test_layers_by_name_module_pair_or_filter_and_a_global_magnitude_profile():
    """Lightning ModelPruning's (module, "weight") pairs, modules, names and a filter select the same
    layers; one overall compression is spread uniformly or by one global magnitude threshold, and
    layers left out stay dense but count in the total."""
    from admm_pruning.api import layer_names, resolve_targets

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    assert layer_names(model, [(model[0], "weight"), model[2]]) == ["0", "2"] == layer_names(model, ["0", "2"])
    assert layer_names(model, lambda name, m: m.out_features == 4) == ["2"]
    with pytest.raises(ValueError, match="ADMM prunes a layer's 'weight'"):
        layer_names(model, [(model[0], "bias")])
    # 192 weights / 2 = 96 kept; layer 2's 64 stay dense, so layer 0 keeps 32 of its 128
    assert resolve_targets(model, 2.0, [model[0]]) == {"0": 0.25}
    glob = resolve_targets(model, 4.0, None, profile="global_magnitude")  # 48 kept by one threshold
    weights = torch.cat([model[0].weight.detach().abs().flatten(), model[2].weight.detach().abs().flatten()])
    threshold = weights.sort(descending=True).values[47]
    expected = {n: float((model.get_submodule(n).weight.detach().abs() >= threshold).float().mean())
                for n in ("0", "2")}
    assert glob == pytest.approx(expected) and round(glob["0"] * 128 + glob["2"] * 64) == 48


def test_update_every_epochs_counts_the_fits_optimizer_steps_per_epoch():
    """8 batches an epoch, 2 accumulated per optimizer step: an update every 4 steps."""
    cb = ADMMPruning(KEEP, ADMMSchedule(rho=RHO, iterations=100), update_every_epochs=1)
    trainer(max_epochs=2, accumulate_grad_batches=2, callbacks=[cb]).fit(Regressor(), data())
    assert cb.admm.update_every == 4 and [h["iteration"] for h in cb.admm.history] == [1, 2]


def test_an_update_falls_due_even_when_its_step_was_skipped():
    """A step the fp16 GradScaler skips calls no optimizer hook, but Lightning counts it: the update
    due at step 2 follows at step 3 instead of waiting a whole interval."""
    from types import SimpleNamespace

    cb = ADMMPruning(KEEP, ADMMSchedule(rho=RHO, iterations=100), update_every=2)
    cb.build(Regressor(), 2)
    cb.trainer = SimpleNamespace(global_step=0, strategy=SimpleNamespace(broadcast=lambda x, src=0: x))
    for seen in (0, 2, 3):  # the hooks of steps 1, 3 and 4 (step 2 was skipped)
        cb.trainer.global_step = seen
        cb._after_step(None, (), {})
    assert [h["iteration"] for h in cb.admm.history] == [1, 2]  # after steps 3 and 4


def test_n_m_layers_count_at_n_over_m_when_one_compression_is_spread():
    from admm_pruning.api import resolve_targets

    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 4))
    # 192 / 2 = 96 kept: the 2:4 layer keeps 64 of its 128, so the other keeps 32 of its 64
    assert resolve_targets(model, 2.0, sparsity={"0": "2:4"}) == {"0": 0.5, "2": 0.5}
    with pytest.raises(ValueError, match="update_every=0: must be >= 1"):
        ADMM(model, 2.0, update_every=0)
