"""ADMM pruning of a small Transformer encoder to 2:4 sparsity (N:M) inside your own LightningModule.

Every Linear layer of the encoder (attention output, both feed-forward layers) and the head ends
with exactly 2 nonzero weights in every 4 consecutive weights of a row: the layout sparse tensor
cores run. ADMM's Z-step is the exact projection onto that set (the 2 largest of each 4). The task
is generated: does a sequence of tokens hold more 1s than 2s? Runs anywhere, offline.

    python examples/transformer_nm.py            # well under a minute on 2 CPU cores
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from admm_pruning import ADMMPruning, ADMMSchedule
from admm_pruning.sparsity.masks import current_masks


class SequenceClassifier(pl.LightningModule):
    """A user's module: embedding, a 2-layer encoder, mean pooling, a linear head."""

    def __init__(self, vocab: int = 8, width: int = 32, lr: float = 2e-3) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, width)
        layer = nn.TransformerEncoderLayer(width, nhead=4, dim_feedforward=64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head, self.lr = nn.Linear(width, 2), lr

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embed(tokens)).mean(1))

    def training_step(self, batch, batch_idx):
        tokens, label = batch
        return F.cross_entropy(self(tokens), label)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


def sequences(n: int, length: int = 16, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, 8, (n, length), generator=g)
    return TensorDataset(tokens, ((tokens == 1).sum(1) > (tokens == 2).sum(1)).long())


def main(n: int = 2048, admm_epochs: int = 4, retrain_epochs: int = 2) -> dict[str, float]:
    torch.manual_seed(0)
    module = SequenceClassifier()
    train = DataLoader(sequences(n), batch_size=64, shuffle=True)
    fit = {"accelerator": "cpu", "logger": False, "enable_checkpointing": False, "enable_model_summary": False,
           "enable_progress_bar": False}
    pl.Trainer(max_epochs=2, **fit).fit(module, train)  # dense pretraining
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    pruning = ADMMPruning({}, ADMMSchedule(rho=1e-2, rho_multiplier=1.5, l2=0.0, iterations=admm_epochs),
                          sparsity=dict.fromkeys(linears, "2:4"), update_every=len(train))
    pl.Trainer(max_epochs=admm_epochs, callbacks=[pruning], **fit).fit(module, train)  # ADMM, then hard prune
    pl.Trainer(max_epochs=retrain_epochs, **fit).fit(module, train)  # masked retraining
    test = sequences(1024, seed=1)
    with torch.no_grad():
        acc = (module.eval()(test.tensors[0]).argmax(1) == test.tensors[1]).float().mean().item()
    masks = current_masks(module)  # what the masked retraining held fixed
    groups = torch.cat([masks[n].reshape(-1, 4) for n in linears])
    nonzero = torch.cat([(module.get_submodule(n).weight.detach() != 0).reshape(-1, 4) for n in linears])
    return {"test_acc": acc, "layers": len(linears), "groups": groups.shape[0],
            "groups_with_exactly_2": int((groups.sum(1) == 2).sum()),
            "nonzero_outside_masks": int((nonzero & ~groups).sum())}


if __name__ == "__main__":
    print(main())
