"""Promise 5: at the end of every run the final weights and masks are reloaded from disk and
recounted, and the exported shrunk model is reloaded and checked against the pruned model; a
summary they do not back is never written, the run fails loudly instead."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from admm_pruning import pipeline
from admm_pruning.export.layers import load_shrunk
from admm_pruning.foundations.files import load_tensors, sha256
from admm_pruning.models.lenet import LeNet300
from admm_pruning.report import summary as summary_module
from admm_pruning.report import verify
from admm_pruning.report.sparsity import SparsityMismatchError, count_sparsity

from .helpers import ONESHOT, RESULTS, copy_run, run, stage_dir

pytestmark = pytest.mark.reliability


def rewrite_recorded(d: Path, name: str, tensors: dict[str, torch.Tensor]) -> None:
    """Change an artifact and its recorded sha256 together, as a buggy writer would: the stage
    check passes, so only the final recount can catch it."""
    torch.save(tensors, d / name)
    metrics = json.loads((d / "metrics.json").read_text())
    metrics["artifacts"][name] = sha256(d / name)
    (d / "metrics.json").write_text(json.dumps(metrics))


def nonzero_outside_mask(d: Path) -> str:
    w, masks = load_tensors(d / "weights.pt"), load_tensors(d / "masks.pt")
    i = int((~masks["fc1"].bool()).flatten().nonzero()[0])
    w["fc1.weight"].view(-1)[i] = 0.5
    rewrite_recorded(d, "weights.pt", w)
    return "nonzero weights outside the saved mask"


def mask_widened(d: Path) -> str:
    """A mask that keeps one more weight than the pruner's, though that weight is still zero."""
    masks = load_tensors(d / "masks.pt")
    w = load_tensors(d / "weights.pt")["fc1.weight"]
    i = int(((~masks["fc1"].bool()) & (w == 0)).flatten().nonzero()[0])
    masks["fc1"].view(-1)[i] = True
    rewrite_recorded(d, "masks.pt", masks)
    return "mask differs from the pruner's"


def changed_after_finishing(d: Path) -> str:
    w = load_tensors(d / "weights.pt")
    torch.save(w, d / "weights.pt")  # same tensors, new bytes: the stage check runs before, this after
    return "changed after its stage finished"


@pytest.mark.parametrize("tamper", [nonzero_outside_mask, mask_widened])
def test_tampered_final_weights_or_masks_fail_the_run_and_write_no_summary(baseline, data_dir, tmp_path, tamper):
    root = copy_run(baseline[0], tmp_path)
    message = tamper(stage_dir(root, "retrain"))
    with pytest.raises(SparsityMismatchError, match=message):
        run(data_dir, root, *ONESHOT)
    assert not (root / RESULTS).exists()


def test_weights_changed_during_the_run_fail_it(baseline, data_dir, tmp_path, monkeypatch):
    root = copy_run(baseline[0], tmp_path)
    real = pipeline.StageCache.run

    def run_then_touch(self: Any, desc: Any, *args: Any) -> Any:
        result = real(self, desc, *args)
        if desc.name == "retrain":
            changed_after_finishing(result.dir)
        return result

    monkeypatch.setattr(pipeline.StageCache, "run", run_then_touch)
    with pytest.raises(SparsityMismatchError, match="changed after its stage finished"):
        run(data_dir, root, *ONESHOT)
    assert not (root / RESULTS).exists()


def test_a_summary_claim_that_the_recount_does_not_back_fails_the_run(baseline, data_dir, tmp_path, monkeypatch):
    root = copy_run(baseline[0], tmp_path)

    def boastful(*args: Any, **kwargs: Any) -> dict[str, Any]:
        out = count_sparsity(*args, **kwargs)
        return {**out, "compression": out["compression"] * 2}

    monkeypatch.setattr(summary_module, "count_sparsity", boastful)
    with pytest.raises(SparsityMismatchError, match="summary compression=.* recounts to"):
        run(data_dir, root, *ONESHOT)
    assert not (root / RESULTS).exists()


def test_an_honest_run_passes_and_its_summary_matches_the_files(baseline):
    root, s = baseline
    d = Path(s["stage_dirs"]["retrain"])
    recount = count_sparsity(load_tensors(d / "weights.pt"), list(s["per_layer"]), load_tensors(d / "masks.pt"))
    assert s["compression"] == recount["compression"] and s["per_layer"] == recount["per_layer"]
    assert json.loads((root / RESULTS / "summary.json").read_text())["compression"] == s["compression"]


def test_an_export_that_does_not_reload_to_the_pruned_model_fails_the_run(baseline, data_dir, tmp_path, monkeypatch):
    root = copy_run(baseline[0], tmp_path)

    def corrupted(folder: Path) -> torch.nn.Module:
        net = load_shrunk(folder)
        with torch.no_grad():
            next(m for m in net if isinstance(m, torch.nn.Linear)).weight[0, 0] += 1.0
        return net

    monkeypatch.setattr(verify, "load_shrunk", corrupted)
    with pytest.raises(SparsityMismatchError, match="exports/retrain-.*: the exported shrunk model's outputs differ"):
        run(data_dir, root, *ONESHOT)
    assert not (root / RESULTS).exists()


def test_the_export_is_a_smaller_model_that_reloads_to_the_final_outputs(baseline, data_dir):
    _, s = baseline
    e, folder = s["export"], Path(s["export_dir"])
    assert e["exported"] and e["max_abs_diff"] <= 1e-4 and e["parameters"] < e["dense_parameters"]
    final = LeNet300()
    final.load_state_dict(load_tensors(Path(s["stage_dirs"]["retrain"]) / "weights.pt"))
    x = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(load_shrunk(folder)(x), final.eval()(x), atol=1e-4)
