"""docs/extending.md's three recipes, proved from this file alone: a new pruner, a new model and a
new data set, each a class here and a config file written at test time into a search path, run
through the whole pipeline (pretrain, prune, masked retrain, verified summary and export)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from admm_pruning.data.mnist import InMemoryData, Split
from admm_pruning.pipeline import run_experiment
from admm_pruning.pruners.base import PruneJob, Pruner, PruneResult
from admm_pruning.sparsity.projections import keep_count
from conftest import compose_cfg


class FirstKPruner(Pruner):
    """Keeps the first k weights of each layer in flat order: not a good method, a short one."""

    name = "first_k"

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def prune(self, job: PruneJob) -> PruneResult:
        masks = {}
        for name, frac in job.keep.items():
            w = job.model.get_submodule(name).weight
            flat = torch.zeros(w.numel(), dtype=torch.bool)
            flat[self.offset:self.offset + keep_count(w.numel(), frac)] = True
            masks[name] = flat.view_as(w)
        return PruneResult(masks, {"offset": self.offset})


class TinyMLP(nn.Module):
    def __init__(self, width: int = 16, num_classes: int = 3) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(8, width), nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


class Blobs(InMemoryData):
    """Three Gaussian blobs in 8 dimensions."""

    def __init__(self, name: str = "blobs", n: int = 600, split_seed: int = 0) -> None:
        self.name, self.n, self.split_seed = name, n, split_seed

    def setup(self) -> Blobs:
        if self.train is None:
            g = torch.Generator().manual_seed(self.split_seed)
            y = torch.randint(0, 3, (self.n,), generator=g)
            x = torch.randn(self.n, 8, generator=g) + 3 * nn.functional.one_hot(y, 8).float()
            self.train, self.val, self.test = Split(x[:400], y[:400]), Split(x[400:500], y[400:500]), \
                Split(x[500:], y[500:])
        return self


CONFIGS = {
    "pruner/first_k.yaml": f"_target_: {__name__}.FirstKPruner\nname: first_k\noffset: 2\n",
    "model/tiny_mlp.yaml": f"name: tiny_mlp\ndropout: 0.0\ndropout_layer: null\n"
                           f"net:\n  _target_: {__name__}.TinyMLP\n  width: 16\n",
    "data/blobs.yaml": f"_target_: {__name__}.Blobs\nname: blobs\nsplit_seed: 0\n",
}


def test_a_pruner_a_model_and_a_data_set_added_from_one_file_run_the_pipeline(tmp_path: Path):
    conf = tmp_path / "conf"
    for rel, text in CONFIGS.items():
        (conf / rel).parent.mkdir(parents=True, exist_ok=True)
        (conf / rel).write_text(text)
    s = run_experiment(compose_cfg([
        f"hydra.searchpath=[file://{conf}]", "pruner=first_k", "model=tiny_mlp", "data=blobs",
        "+prune.keep.fc1=0.25", "+prune.keep.fc2=0.5", "logger=csv", "trainer.accelerator=cpu",
        "pretrain.epochs=10", "retrain.epochs=10", "pretrain.batch_size=50", "retrain.batch_size=50",
        f"paths.artifacts_dir={tmp_path / 'a'}", f"paths.results_dir={tmp_path / 'r'}"]))
    assert (s["pruner"], s["model"], s["data"]) == ("first_k", "tiny_mlp", "blobs")
    assert s["per_layer"]["fc1"]["nonzero"] == 32 and s["per_layer"]["fc2"]["nonzero"] == 24
    assert s["final_acc"] > 0.8 and s["export"]["exported"]
    masks = torch.load(Path(s["stage_dirs"]["first_k"]) / "masks.pt")
    assert masks["fc1"].flatten().nonzero().flatten().tolist() == list(range(2, 34))  # the option reached it
    assert (tmp_path / "r" / "tiny_mlp_first_k" / "blobs" / "seed0" / "summary.json").is_file()
