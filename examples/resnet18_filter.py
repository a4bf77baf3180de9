"""ADMM pruning of torchvision's ResNet-18 inside your own LightningModule, with filter sparsity.

The first conv of every basic block loses half its filters (whole filters: its outputs feed only
the block's second conv), every other conv and the classifier keep 20% of their weights, by ADMM
(Zhang et al. 2018), then the hard prune, then masked retraining in a second fit. The data are
generated 32x32 images (a class is a coloured square at its own place): runs anywhere, offline.

    python examples/resnet18_filter.py            # about a minute on 2 CPU cores
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import resnet18

from admm_pruning import ADMMPruning, ADMMSchedule


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


def main(images: int = 512, admm_epochs: int = 3, retrain_epochs: int = 2) -> dict[str, float]:
    torch.manual_seed(0)
    module = Classifier()
    train = DataLoader(squares(images), batch_size=32, shuffle=True)
    convs = [n for n, m in module.named_modules() if isinstance(m, torch.nn.Conv2d)]
    block_conv1 = [n for n in convs if n.endswith(".conv1") and ".layer" in n]
    targets = {n: 0.5 if n in block_conv1 else 0.2 for n in convs} | {"net.fc": 0.2}
    steps = len(train)  # optimizer steps per epoch
    pruning = ADMMPruning(targets, ADMMSchedule(rho=1e-2, l2=0.0, iterations=admm_epochs * 2),
                          sparsity=dict.fromkeys(block_conv1, "filter"), update_every=max(1, steps // 2))
    fit = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
           "enable_progress_bar": False}
    pl.Trainer(max_epochs=admm_epochs, callbacks=[pruning], **fit).fit(module, train)  # ADMM, then hard prune
    pl.Trainer(max_epochs=retrain_epochs, **fit).fit(module, train)  # masked retraining
    test = squares(256, seed=1)
    with torch.no_grad():
        acc = (module.net.eval()(test.tensors[0]).argmax(1) == test.tensors[1]).float().mean().item()
    weights = {n: module.get_submodule(n).weight for n in targets}
    kept = sum(int((w != 0).sum()) for w in weights.values()) / sum(w.numel() for w in weights.values())
    dead = sum(int((module.get_submodule(n).weight.flatten(1) == 0).all(1).sum()) for n in block_conv1)
    return {"test_acc": acc, "kept": kept, "dead_filters": dead, "block_conv1_filters":
            sum(module.get_submodule(n).out_channels for n in block_conv1)}


if __name__ == "__main__":
    print(main())
