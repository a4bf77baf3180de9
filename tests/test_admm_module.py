"""The ADMM W-step as Lightning runs it: the gradient the optimizer applies, under fp32, fp16 mixed
precision and gradient accumulation; Z/U updates gated on optimizer steps; what rho does to the
primal residual; and the hard prune keeping the top-k of W."""

from __future__ import annotations

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.plugins.precision import MixedPrecision
from torch.utils.data import DataLoader, TensorDataset

from admm_pruning.models.lenet import LeNet300
from admm_pruning.pruners.admm import ADMMModule, hard_prune
from admm_pruning.sparsity.admm import ADMMSchedule, ADMMState

KEEP = {"fc1": 0.1, "fc2": 0.2}
L2, RHO = 1e-2, 1.0


def loader(n: int = 64, batch: int = 8) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 10, (n,), generator=g))
    return DataLoader(data, batch_size=batch, shuffle=False)


class Recording(ADMMModule):
    """Keeps the batches it trains on, so the test can recompute the task gradient."""

    def training_step(self, batch, batch_idx):
        self.batches.append(batch)
        return super().training_step(batch, batch_idx)


def fit(precision: str = "32-true", accumulate: int = 1, steps_per_epoch: int = 8, epochs_per_iteration=100.0,
        iterations: int = 1000, rho: float = RHO, optimizer=None, max_steps: int = 3, epochs: int = 1,
        l2: float = L2, fused: bool = False, device: str = "cpu"):
    """Trains LeNet-300 with ADMMModule; returns the module and, per optimizer step, the gradient the
    optimizer applied with the weights, Z, U and rho it was applied at."""
    torch.manual_seed(0)
    steps: list[dict] = []
    holder: dict = {}

    class RecordingSGD(torch.optim.SGD):
        def step(self, closure=None):
            if closure is not None:  # fp32: Lightning runs forward, backward and its hooks in here
                with torch.enable_grad():
                    closure()
            m = holder["module"]
            # A fused optimizer divides by the GradScaler's scale inside its step (None: unscaled)
            scale = getattr(self, "grad_scale", None)
            scale = 1.0 if scale is None else float(scale)
            steps.append({"grad": {n: m.model.get_submodule(n).weight.grad / scale for n in KEEP},
                          "w": {n: m.model.get_submodule(n).weight.detach().clone() for n in KEEP},
                          "state": {k: v.clone() for k, v in m.model.state_dict().items()},
                          "z": {n: m.admm.z(n).clone() for n in KEEP}, "u": {n: m.admm.u(n).clone() for n in KEEP},
                          "rho": float(m.admm.rho), "batches": len(m.batches)})
            return super().step()

    schedule = ADMMSchedule(optimizer=optimizer or (lambda p: RecordingSGD(p, lr=0.01, fused=fused or None)),
                            iterations=iterations,
                            epochs_per_iteration=epochs_per_iteration, rho=rho, l2=l2, batch_size=8)
    module = Recording(LeNet300(), schedule, KEEP, steps_per_epoch)
    module.batches, holder["module"] = [], module
    # Lightning turns "16-mixed" into bf16 on CPU; the fp16 plugin with its GradScaler (as on a GPU)
    # is given explicitly so that loss scaling is exercised here.
    amp = {"plugins": [MixedPrecision("16-mixed", "cpu", torch.amp.GradScaler("cpu"))]} \
        if precision == "16-mixed" and device == "cpu" else {"precision": precision}
    trainer = pl.Trainer(accelerator=device, devices=1, **amp, accumulate_grad_batches=accumulate,
                         max_steps=max_steps, max_epochs=epochs, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader())
    return module, steps


def task_grad(state: dict, batches: list, n: str) -> torch.Tensor:
    """d/dW of the mean cross-entropy over ``batches`` (as accumulation averages), in fp32."""
    net = LeNet300()
    net.load_state_dict(state)
    return torch.autograd.grad(sum(F.cross_entropy(net(x.cpu()), y.cpu()) for x, y in batches) / len(batches),
                               net.get_submodule(n).weight)[0]


@pytest.mark.parametrize("precision, accumulate, tol, l2, rho, fused", [
    ("32-true", 1, 1e-6, L2, RHO, False),
    ("16-mixed", 1, 0.05, L2, RHO, False),    # fp16 gradients are unscaled only after backward's hooks
    ("16-mixed", 1, 0.05, 2.0, 1e-6, False),  # the same for L2 alone
    ("16-mixed", 1, 0.05, L2, RHO, True),     # a fused optimizer unscales in its own step: Lightning does not
    ("16-mixed", 1, 0.05, 2.0, 1e-6, True),
    ("32-true", 2, 1e-6, L2, RHO, False),     # accumulation: the penalty once per optimizer step, not per batch
])
def test_applied_gradient_is_task_plus_l2_plus_rho_times_residual(precision, accumulate, tol, l2, rho, fused,
                                                                  device="cpu"):
    """fp32: every entry within ``tol``. fp16: the task gradient runs in half precision (a ReLU can
    flip), so the check is on the whole layer: ||applied - task - added|| <= tol * ||added||; terms
    divided by the loss scale (65,536) would leave a relative error of 1."""
    module, steps = fit(precision, accumulate, rho=rho, l2=l2, fused=fused, device=device)
    assert len(steps) == 3
    for i, s in enumerate(steps):
        batches = module.batches[s["batches"] - accumulate: s["batches"]]
        for n in KEEP:
            w, z, u = s["w"][n], s["z"][n], s["u"][n]
            added = (l2 * w + s["rho"] * (w - z + u)).cpu()
            error = s["grad"][n].cpu() - task_grad(s["state"], batches, n) - added
            if precision == "16-mixed":
                assert error.norm() <= tol * added.norm(), (i, n, float(error.norm() / added.norm()))
            else:
                assert added.abs().max() > 1e3 * tol, "the added terms must be large enough to be seen"
                assert torch.allclose(error, torch.zeros_like(error), atol=tol), (i, n, accumulate)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (benchmarks/gpu_check.sh runs it where one is)")
@pytest.mark.parametrize("fused", [False, True])
def test_fp16_on_cuda_applies_the_penalty_and_l2_unscaled(fused):
    """The same check with Lightning's own fp16 GradScaler on a GPU, fused optimizer or not."""
    test_applied_gradient_is_task_plus_l2_plus_rho_times_residual("16-mixed", 1, 0.05, L2, RHO, fused, device="cuda")


def test_z_u_updates_follow_optimizer_steps_under_accumulation():
    """8 batches per epoch, 2 per optimizer step: 4 optimizer steps; an update every 2 of them
    (epochs_per_iteration 0.5 of 4 steps) gives updates after steps 2 and 4, not before any step."""
    module, steps = fit(accumulate=2, steps_per_epoch=4, epochs_per_iteration=0.5, iterations=2, max_steps=-1)
    assert len(steps) == 4
    assert [h["iteration"] for h in module.history] == [1, 2] and int(module.admm.iteration) == 2
    changed = [i for i in range(1, 4) if not torch.equal(steps[i]["z"]["fc1"], steps[i - 1]["z"]["fc1"])]
    assert changed == [2]  # Z first changes between optimizer steps 2 and 3 (after the update at step 2)


def test_rho_drives_the_primal_residual_down():
    """Same data, steps and updates; rho = 1 against rho -> 0: the penalty is what makes W meet Z."""
    def primal(rho: float) -> float:
        module, _ = fit(rho=rho, steps_per_epoch=8, epochs_per_iteration=1.0, iterations=5, max_steps=-1, epochs=5,
                        optimizer=lambda p: torch.optim.SGD(p, lr=0.05))
        return sum(module.history[-1]["primal"].values())

    strong, weak = primal(1.0), primal(1e-8)
    assert strong < 0.05 * weak, (strong, weak)


def test_hard_prune_keeps_the_top_k_of_w_not_of_z():
    """After ADMM, Z = Proj(W + U) can rank entries differently from W; the prune keeps W's l_i largest."""
    torch.manual_seed(0)
    model = LeNet300()
    w = model.fc3.weight.detach()
    state = ADMMState({"fc3": w}, {"fc3": 0.1}, ADMMSchedule())
    state.u("fc3").copy_(-w + torch.randn_like(w) * w.abs().mean())  # W + U: a different ranking
    state.update({"fc3": w})
    masks = hard_prune(model, {"fc3": 0.1})
    k = 100
    assert int(masks["fc3"].sum()) == k
    assert torch.equal(masks["fc3"], w.abs() >= w.abs().flatten().topk(k).values[-1])
    assert not torch.equal(masks["fc3"], state.z("fc3") != 0)


def preset_lrs(pruner: str, steps: list[int], steps_per_epoch: int = 10) -> list[float]:
    """The W-step's lr at each of ``steps`` (optimizer steps into the phase), for a composed preset."""
    from admm_pruning.pruners.base import build_pruner
    from conftest import compose_cfg

    schedule = build_pruner(compose_cfg([f"pruner={pruner}"]).pruner).schedule
    module = ADMMModule(LeNet300(), schedule, KEEP, steps_per_epoch)
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    lrs, done = {}, 0
    for step in sorted(steps):
        for _ in range(step - done):
            opt.step()
            sched.step()
        done = step
        lrs[step] = opt.param_groups[0]["lr"]
    return [lrs[s] for s in steps]


def test_the_caffe_preset_drops_the_lr_once_per_admm_iteration_and_resets_it():
    """admm_caffe: 12-epoch iterations, lr 1e-3 -> 1e-4 after 2 epochs, reset at the next iteration
    (the fork's `admm` policy); at 10 steps an epoch: steps 0, 19 | 20, 40 (4 ep.), 110 (11 ep.),
    119 | 120 (the reset), 139 | 140."""
    lrs = preset_lrs("admm_caffe", [0, 19, 20, 40, 110, 119, 120, 139, 140])
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-4, 1e-4, 1e-3, 1e-3, 1e-4])


def test_the_progressive_preset_divides_the_lr_by_ten_every_third_of_an_interval_and_resets_it():
    """admm_progressive: 4-epoch intervals; the code's lr at the start of epoch e of an interval is
    lr * 0.1 ** (e // (4 / 3)): epochs 0, 1 at 1e-3, epoch 2 at 1e-4, epoch 3 at 1e-5, then reset."""
    lrs = preset_lrs("admm_progressive", [0, 19, 20, 29, 30, 39, 40, 60])
    assert lrs == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5, 1e-3, 1e-4])


@pytest.mark.parametrize("override, message", [
    ("pruner.lr_policy=sometimes", "pruner.lr_policy='sometimes': expected one of"),
    ("pruner.lr_drop_epochs=2", "pruner.lr_policy=thirds: leave pruner.lr_drop_epochs null"),
])
def test_an_lr_policy_that_cannot_work_is_refused_by_key(override, message):
    from admm_pruning.foundations.errors import ConfigError
    from admm_pruning.pruners.base import build_pruner
    from conftest import compose_cfg

    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        build_pruner(compose_cfg(["pruner=admm_progressive", override]).pruner)


def test_a_checkpoint_from_before_the_callback_resumes_its_admm_state(tmp_path):
    """Stage checkpoints written when Z, U and rho were buffers of ADMMModule (``admm.*`` keys in
    the module's state dict) resume with that state, now the callback's."""
    torch.manual_seed(0)
    schedule = ADMMSchedule(optimizer=lambda p: torch.optim.SGD(p, lr=0.01), iterations=100,
                            epochs_per_iteration=0.5, rho=RHO, l2=L2, batch_size=8)
    module = ADMMModule(LeNet300(), schedule, KEEP, 8)
    kwargs = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                  default_root_dir=tmp_path)
    trainer = pl.Trainer(max_epochs=1, **kwargs)
    trainer.fit(module, loader())
    trainer.save_checkpoint(tmp_path / "new.ckpt")
    ckpt = torch.load(tmp_path / "new.ckpt", weights_only=False)
    (key,) = [k for k in ckpt["callbacks"] if k.startswith("StageADMM")]
    state = ckpt["callbacks"].pop(key)["admm"]
    ckpt["state_dict"].update({f"admm.{k}": v for k, v in state["state"].items()})
    ckpt["admm_history"] = state["history"]
    torch.save(ckpt, tmp_path / "old.ckpt")
    resumed = ADMMModule(LeNet300(), schedule, KEEP, 8)
    pl.Trainer(max_epochs=1, **kwargs).fit(resumed, loader(), ckpt_path=tmp_path / "old.ckpt")
    assert resumed.history == module.history and len(resumed.history) == 2
    for name, value in module.admm.state_dict().items():
        assert torch.equal(resumed.admm.state_dict()[name], value), name
