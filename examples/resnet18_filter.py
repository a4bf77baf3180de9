"""ADMM pruning of torchvision's ResNet-18 inside your own LightningModule, with filter sparsity,
then a physically smaller ResNet.

The first conv of every basic block loses half its filters (whole filters: its outputs feed only
the block's second conv), every other conv and the classifier keep 20% of their weights, by ADMM
(Zhang et al. 2018), then the hard prune, then masked retraining in a second fit. A pruned filter's
BatchNorm channel is held at zero scale and shift too, so the whole channel outputs exactly 0; the
export then deletes those channels (and the next conv's inputs they fed) with Torch-Pruning's
DependencyGraph, which knows which layers a ResNet couples, and checks the smaller model computes
what the masked one does. The data are generated 32x32 images (a class is a bright square at its
own corner): runs anywhere, offline.

    python examples/resnet18_filter.py            # about half a minute on 2 CPU cores
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
import torch_pruning as tp
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import resnet18

from admm_pruning import ADMMPruning, ADMMSchedule
from admm_pruning.sparsity.masks import Mask, plain_state_dict

FIT = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
       "enable_progress_bar": False}


class Classifier(pl.LightningModule):
    """A user's module: nothing here knows about pruning."""

    def __init__(self, lr: float = 1e-3) -> None:
        super().__init__()
        self.net, self.lr = resnet18(num_classes=4), lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def squares(n: int, seed: int = 0) -> TensorDataset:
    """Noise with a bright 8x8 square in one of 4 corners: the corner is the class."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.rand(n, 3, 32, 32, generator=g) * 0.3, torch.randint(0, 4, (n,), generator=g)
    for i, c in enumerate(y.tolist()):
        r, q = 4 + 16 * (c // 2), 4 + 16 * (c % 2)
        x[i, :, r:r + 8, q:q + 8] += 0.7
    return TensorDataset(x, y)


def dead_filters(net: nn.Module, convs: list[str]) -> dict[str, torch.Tensor]:
    return {n: (net.get_submodule(n).weight.flatten(1) == 0).all(1) for n in convs}


def hold_batchnorm_at_zero(net: nn.Module, dead: dict[str, torch.Tensor]) -> None:
    """Mask each dead filter's BatchNorm scale and shift (block conv1 feeds bn1): the channel then
    outputs exactly 0, in training and at inference, whatever its running statistics."""
    for conv, gone in dead.items():
        bn = net.get_submodule(conv.replace(".conv1", ".bn1"))
        with torch.no_grad():
            bn.weight.mul_(~gone)
            bn.bias.mul_(~gone)
        for name in ("weight", "bias"):
            parametrize.register_parametrization(bn, name, Mask(~gone))


def export(net: nn.Module, dead: dict[str, torch.Tensor], example: torch.Tensor) -> nn.Module:
    """A plain ResNet-18 with the masked weights, then every dead channel deleted through the
    layers Torch-Pruning couples to it (its BatchNorm, the next conv's inputs)."""
    small = resnet18(num_classes=4).eval()
    small.load_state_dict(plain_state_dict(net))
    graph = tp.DependencyGraph().build_dependency(small, example_inputs=example[:1])
    for conv, gone in dead.items():
        idxs = torch.nonzero(gone).flatten().tolist()
        if idxs:
            graph.get_pruning_group(small.get_submodule(conv), tp.prune_conv_out_channels, idxs=idxs).prune()
    return small


def main(images: int = 512, admm_epochs: int = 3, retrain_epochs: int = 2) -> dict[str, float]:
    torch.manual_seed(0)
    module = Classifier()
    train = DataLoader(squares(images), batch_size=32, shuffle=True)
    convs = [n for n, m in module.named_modules() if isinstance(m, nn.Conv2d)]
    block_conv1 = [n for n in convs if n.endswith(".conv1") and ".layer" in n]
    targets = {n: 0.5 if n in block_conv1 else 0.2 for n in convs} | {"net.fc": 0.2}
    steps = len(train)  # optimizer steps per epoch
    pruning = ADMMPruning(targets, ADMMSchedule(rho=1e-2, l2=0.0, iterations=admm_epochs * 2),
                          sparsity=dict.fromkeys(block_conv1, "filter"), update_every=max(1, steps // 2))
    pl.Trainer(max_epochs=admm_epochs, callbacks=[pruning], **FIT).fit(module, train)  # ADMM, then hard prune
    dead = dead_filters(module.net, [n.removeprefix("net.") for n in block_conv1])
    hold_batchnorm_at_zero(module.net, dead)
    pl.Trainer(max_epochs=retrain_epochs, **FIT).fit(module, train)  # masked retraining
    test = squares(256, seed=1)
    net = module.net.eval()
    small = export(net, dead, test.tensors[0])
    with torch.no_grad():
        out, out_small = net(test.tensors[0]), small(test.tensors[0])
    weights = {n: module.get_submodule(n).weight for n in targets}
    kept = sum(int((w != 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    return {"test_acc": (out.argmax(1) == test.tensors[1]).float().mean().item(), "kept": kept,
            "dead_filters": sum(int(g.sum()) for g in dead.values()),
            "block_conv1_filters": sum(g.numel() for g in dead.values()),
            "params": sum(p.numel() for p in net.parameters()),
            "params_shrunk": sum(p.numel() for p in small.parameters()),
            "shrunk_max_abs_diff": float((out - out_small).abs().max())}


if __name__ == "__main__":
    print(main())
