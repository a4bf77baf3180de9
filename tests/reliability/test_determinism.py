"""Promise 2: the same config and seed on CPU give identical results in two fresh runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from admm_pruning.foundations.files import load_tensors

from .helpers import ADMM, outcome, run, summary_at

pytestmark = pytest.mark.reliability


def test_two_fresh_runs_give_identical_summaries_and_weights(data_dir, tmp_path):
    # The default trainer settings (no trainer.deterministic=true): determinism must not depend on it.
    a, b = (run(data_dir, tmp_path / name, *ADMM, "trainer.deterministic=false") for name in ("a", "b"))
    assert not any(a["stage_cached"].values()) and not any(b["stage_cached"].values())
    assert outcome(summary_at(tmp_path / "a")) == outcome(summary_at(tmp_path / "b"))
    for stage in ("admm", "retrain"):
        ma, mb = (json.loads((Path(s["stage_dirs"][stage]) / "metrics.json").read_text()) for s in (a, b))
        assert ma.get("residuals") == mb.get("residuals") and ma["artifacts"] == mb["artifacts"]  # same bytes
    wa, wb = (load_tensors(Path(s["stage_dirs"]["retrain"]) / "weights.pt") for s in (a, b))
    assert all(wa[k].equal(wb[k]) for k in wa)
    print(f"\ndeterminism: final_acc {a['final_acc']} vs {b['final_acc']}, compression {a['compression']} "
          f"vs {b['compression']}; stage seconds {a['stage_seconds']} / {b['stage_seconds']}")
