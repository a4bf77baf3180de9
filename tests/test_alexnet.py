"""AlexNet / CaffeNet: the papers' layer names and weight counts, torchvision weights, the 21x preset,
top-5 accuracy, and the whole pipeline on FakeData."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest
import torch
from hydra.utils import instantiate
from torch import nn
from torchvision.models import alexnet as torchvision_alexnet

from admm_pruning.data.imagenet import FakeImageData
from admm_pruning.data.mnist import Split
from admm_pruning.foundations.errors import ConfigError
from admm_pruning.foundations.files import load_tensors
from admm_pruning.models.alexnet import AlexNet, CaffeNet
from admm_pruning.models.layers import prunable_layers
from admm_pruning.models.lenet import LeNet5
from admm_pruning.models.pretrained import file_sha256, from_torchvision_alexnet, load_dense_checkpoint
from admm_pruning.pipeline import run_experiment
from admm_pruning.pruners.base import build_pruner
from admm_pruning.sparsity.projections import keep_count
from admm_pruning.training.context import StageContext
from admm_pruning.training.modules import ClassifierModule
from conftest import compose_cfg

LAYERS = ["conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"]
CAFFENET_SHAPES = {"conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
                   "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3), "fc6": (4096, 9216),
                   "fc7": (4096, 4096), "fc8": (1000, 4096)}
KEEP_21X = {"conv1": 0.81, "conv2": 0.20, "conv3": 0.19, "conv4": 0.20, "conv5": 0.20, "fc6": 0.028,
            "fc7": 0.059, "fc8": 0.093}
CPU = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False, "enable_model_summary": False,
       "num_sanity_val_steps": 0}


def shapes(net: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        return {n: tuple(m.weight.shape) for n, m in prunable_layers(net()).items()}


def test_layer_names_and_weight_counts_are_the_papers():
    caffe, tv = shapes(CaffeNet), shapes(AlexNet)
    assert list(caffe) == list(tv) == LAYERS
    assert caffe == CAFFENET_SHAPES
    count = {name: {n: torch.Size(s).numel() for n, s in d.items()} for name, d in (("caffe", caffe), ("tv", tv))}
    assert sum(count["caffe"].values()) == 60_954_656  # the papers' 60.9M
    assert sum(count["tv"].values()) == 61_090_496
    assert {n: count["tv"][n] for n in ("fc6", "fc7", "fc8")} == {n: count["caffe"][n] for n in ("fc6", "fc7", "fc8")}


@pytest.mark.parametrize("net, paper_shapes_ratio", [(AlexNet, 20.857), (CaffeNet, 20.970)])
def test_21x_preset_on_both_shapes(net, paper_shapes_ratio):
    cfg = compose_cfg(["experiment=alexnet_admm_21x"])
    assert dict(cfg.prune.keep) == KEEP_21X and cfg.paper.compression == 21
    sizes = {n: torch.Size(s).numel() for n, s in shapes(net).items()}
    kept = sum(keep_count(sizes[n], f) for n, f in KEEP_21X.items())
    assert sum(sizes.values()) / kept == pytest.approx(paper_shapes_ratio, abs=5e-4)
    assert round(kept / 1e6, 1) == 2.9  # the paper's 2.9M


def test_caffenet_pools_to_6x6_at_caffe_and_torchvision_crops():
    seen = []
    net = CaffeNet(num_classes=10).eval()
    net.pool.register_forward_hook(lambda m, inp, out: seen.append(tuple(inp[0].shape[-2:])))
    with torch.no_grad():
        for size in (227, 224):
            net(torch.zeros(1, 3, size, size))
    assert seen == [(6, 6), (6, 6)]  # the adaptive pool is the identity there: Caffe's geometry


def test_torchvision_weights_map_onto_the_papers_names(tmp_path):
    torch.manual_seed(0)
    tv = torchvision_alexnet(num_classes=10).eval()
    torch.manual_seed(0)
    ours = AlexNet(num_classes=10).eval()
    mapped = from_torchvision_alexnet(tv.state_dict())
    assert all(torch.equal(mapped[k], v) for k, v in ours.state_dict().items())  # same init from the same seed
    path = tmp_path / "alexnet-owt.pth"
    torch.save({k: v * 1.5 for k, v in tv.state_dict().items()}, path)
    tv.load_state_dict(torch.load(path, weights_only=True))
    assert load_dense_checkpoint(ours, path) == file_sha256(path)
    x = torch.randn(2, 3, 96, 96)
    with torch.no_grad():
        assert torch.equal(ours(x), tv(x))
    plain = tmp_path / "weights.pt"
    torch.save(ours.state_dict(), plain)
    other = AlexNet(num_classes=10)
    load_dense_checkpoint(other, plain)
    assert torch.equal(other.fc6.weight, ours.fc6.weight)


def test_a_wrong_checkpoint_is_refused_with_the_config_key(tmp_path):
    path = tmp_path / "imagenet.pth"
    torch.save(torchvision_alexnet().state_dict(), path)  # 1000 classes
    with pytest.raises(ConfigError, match=r"pretrain.checkpoint=.*fc8.weight has shape \[1000, 4096\] .* \[10, 4096\]"):
        load_dense_checkpoint(AlexNet(num_classes=10), path)
    with pytest.raises(ConfigError, match="no such file"):
        load_dense_checkpoint(AlexNet(), tmp_path / "missing.pth")
    with pytest.raises(ConfigError, match=r"conv1.weight has shape \[64, 3, 11, 11\] in the file, \[96"):
        load_dense_checkpoint(CaffeNet(), path)  # torchvision's conv shapes are not CaffeNet's
    torch.save(LeNet5().state_dict(), path)
    with pytest.raises(ConfigError, match="keys do not match the model"):
        load_dense_checkpoint(AlexNet(), path)
    torch.save({"features.99.weight": torch.zeros(1)}, path)
    with pytest.raises(ConfigError, match="features.99.weight: not a parameter"):
        load_dense_checkpoint(AlexNet(), path)


def ranked_scores(num_classes: int, ranks: list[int]) -> FakeImageData:
    """Inputs that are already the logits: sample i's label is ranked ranks[i] (1 = top)."""
    x, y = torch.zeros(len(ranks), num_classes), torch.zeros(len(ranks), dtype=torch.long)
    for i, r in enumerate(ranks):
        order = torch.roll(torch.arange(num_classes), i)  # classes by descending score
        x[i, order] = torch.arange(num_classes, 0, -1, dtype=torch.float)
        y[i] = order[r - 1]
    data = FakeImageData()
    data.train = data.val = data.test = Split(x, y)
    return data


def identity_classifier(num_classes: int) -> nn.Module:
    layer = nn.Linear(num_classes, num_classes)
    with torch.no_grad():
        layer.weight.copy_(torch.eye(num_classes))
        layer.bias.zero_()
    return layer


def test_scores_report_top1_and_top5():
    ctx = StageContext(ranked_scores(10, [1] * 5 + [3] * 5 + [7] * 10), CPU, seed=0, experiment="t")
    scores = ctx.scores(identity_classifier(10))
    assert scores == pytest.approx({"acc": 0.25, "acc_top5": 0.5})
    assert ctx.evaluate(identity_classifier(10)) == pytest.approx(0.25)
    three = StageContext(ranked_scores(3, [1, 2, 3, 1]), CPU, seed=0, experiment="t")
    assert three.scores(identity_classifier(3)) == pytest.approx({"acc": 0.5})  # no top-5 of 3 classes


def test_lr_scheduler_steps_each_epoch(tmp_path):
    ctx = StageContext(ranked_scores(10, [1, 2, 3, 4] * 5), CPU, seed=0, experiment="t")
    module = ClassifierModule(identity_classifier(10), partial(torch.optim.SGD, lr=0.1),
                              lr_scheduler=partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.1))
    ctx.fit(module, "t", tmp_path, None, batch_size=5, max_epochs=3)
    assert module.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(1e-4)


def test_global_batch_must_split_over_the_processes(tmp_path):
    ddp = {**CPU, "devices": 2, "strategy": {"_target_": "pytorch_lightning.strategies.DDPStrategy",
                                             "process_group_backend": "gloo"}}
    ctx = StageContext(ranked_scores(10, [1] * 20), ddp, seed=0, experiment="t")
    module = ClassifierModule(identity_classifier(10), partial(torch.optim.SGD, lr=0.1))
    with pytest.raises(ConfigError, match="batch size 5 is global and must be divisible by the 2 processes"):
        ctx.fit(module, "t", tmp_path, None, batch_size=5, max_epochs=1)


@pytest.mark.parametrize("experiment", ["alexnet_admm_21x", "alexnet_han_9x", "alexnet_admm_structured"])
def test_presets_follow_the_papers(experiment):
    cfg = compose_cfg([f"experiment={experiment}"])
    assert cfg.data.name == "imagenet" and cfg.model.net.num_classes == 1000
    assert compose_cfg([f"experiment={experiment}", "data=fakedata"]).model.net.num_classes == 10
    assert cfg.pretrain.checkpoint is None and cfg.pretrain.epochs == 90
    if experiment == "alexnet_admm_21x":  # the Caffe fork's recipe, in epochs of 5,005 iterations
        p = cfg.pruner
        assert (p.iterations, p.epochs_per_iteration, p.lr_drop_epochs, p.batch_size) == (40, 12, 2, 256)
        assert p.rho == 0.0015 and p.rho_scale == 0.5 and p.rho_multiplier == 1.0 and p.l2 == 5e-4
        assert p.optimizer._target_ == "torch.optim.SGD" and (p.optimizer.lr, p.optimizer.momentum) == (1e-3, 0.9)
        assert cfg.retrain.epochs == 90 and cfg.retrain.optimizer.lr == 0.01
        assert (cfg.retrain.lr_scheduler.step_size, cfg.retrain.lr_scheduler.gamma) == (20, 0.1)
    if experiment == "alexnet_han_9x":
        assert cfg.pruner.name == "han" and cfg.pruner.dropout_layer == "fc6"
        # Han retrains at 1/100 of the original lr: the pruner scales pretraining's SGD 0.01
        assert cfg.pruner.optimizer.lr == cfg.pretrain.optimizer.lr == 0.01 and cfg.pruner.lr_scale == 0.01
        assert dict(cfg.prune.keep) == {"conv1": 0.84, "conv2": 0.38, "conv3": 0.35, "conv4": 0.37, "conv5": 0.37,
                                        "fc6": 0.09, "fc7": 0.09, "fc8": 0.25}
    if experiment == "alexnet_admm_structured":
        assert cfg.model.name == "caffenet" and "conv1" not in cfg.prune.keep
        assert {cfg.pruner.sparsity[n] for n in ("conv2", "conv3", "conv4", "conv5")} == {"shape"}
        sizes = {n: torch.Size(s).numel() for n, s in CAFFENET_SHAPES.items()}
        conv = ("conv2", "conv3", "conv4", "conv5")
        kept = sum(keep_count(sizes[n], cfg.prune.keep[n]) for n in conv)
        assert round(sum(sizes[n] for n in conv) / kept, 1) == cfg.paper.conv_compression == 40.5
    assert build_pruner(cfg.pruner).name == cfg.pruner.name


@pytest.mark.slow  # about 3 min on 2 CPU cores: fc6 alone has 37.7M weights to project
def test_alexnet_21x_pipeline_on_fakedata(tmp_path: Path):
    cfg = compose_cfg([
        "experiment=alexnet_admm_21x", "data=fakedata", "logger=csv", "trainer.accelerator=cpu",
        "pretrain.epochs=1", "retrain.epochs=1", "pruner.iterations=2", "pruner.epochs_per_iteration=0.5",
        "pruner.lr_drop_epochs=0.25", "pretrain.batch_size=32", "pruner.batch_size=32", "retrain.batch_size=32",
        f"paths.artifacts_dir={tmp_path / 'artifacts'}", f"paths.results_dir={tmp_path / 'results'}"])
    s = run_experiment(cfg)
    sizes = {n: torch.Size(shape).numel() for n, shape in shapes(lambda: AlexNet(num_classes=10)).items()}
    for name, frac in KEEP_21X.items():
        assert s["per_layer"][name]["total"] == sizes[name]
        assert s["per_layer"][name]["nonzero"] == keep_count(sizes[name], frac)
    assert s["compression"] == sum(sizes.values()) / sum(keep_count(sizes[n], f) for n, f in KEEP_21X.items())
    assert s["admm"]["iterations_run"] == 2 and s["model"] == "alexnet" and s["data"] == "fakedata"
    final = AlexNet(num_classes=10)
    final.load_state_dict(load_tensors(Path(s["stage_dirs"]["retrain"]) / "weights.pt"))
    ctx = StageContext(instantiate(cfg.data).setup(), CPU, seed=0, experiment="t")
    scores = ctx.scores(final)
    assert scores["acc"] == pytest.approx(s["final_acc"]) and 0.0 <= scores["acc_top5"] <= 1.0


def test_the_committed_weight_count_report_is_what_the_code_writes():
    """results/alexnet_weights.md comes from analysis.alexnet_counts, not from a hand."""
    from admm_pruning.analysis import alexnet_counts
    from conftest import ROOT

    text, totals = alexnet_counts.report()
    assert totals["caffenet"]["weights"] == 60_954_656 and round(totals["torchvision"]["compression"], 2) == 20.86
    assert text == (ROOT / "results" / "alexnet_weights.md").read_text()
