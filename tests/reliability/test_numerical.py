"""Promise 8: a NaN or inf loss stops the stage with a message naming the stage and the step:
nothing pruned or saved past it, a non-zero exit from the CLI, no summary."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .helpers import ONESHOT, overrides, run_cli

pytestmark = pytest.mark.reliability

# (stage that blows up, overrides): an absurd learning rate in one stage at a time; one Adam step
# takes the weights to ~1e30 and the logits overflow float32 (1e10 is not enough: the loss stays finite).
CASES = [
    ("pretrain", [*ONESHOT, "pretrain.optimizer.lr=1e30"]),
    ("admm", ["pruner=admm", "pruner.iterations=2", "pruner.epochs_per_iteration=1", "pruner.optimizer.lr=1e30"]),
    ("retrain", [*ONESHOT, "retrain.optimizer.lr=1e30"]),
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory, data_dir: Path) -> dict[str, tuple[int, str, Path]]:
    def launch(case: tuple[str, list[str]]) -> tuple[int, str, Path]:
        root = tmp_path_factory.mktemp(f"nan-{case[0]}")
        rc, out = run_cli(overrides(data_dir, root, *case[1]), root / "run.log")
        return rc, out, root

    with ThreadPoolExecutor(max_workers=len(CASES)) as pool:
        return dict(zip([c[0] for c in CASES], pool.map(launch, CASES), strict=True))


@pytest.mark.parametrize("stage", [c[0] for c in CASES])
def test_a_non_finite_loss_stops_the_run_naming_stage_and_step(outcomes, stage):
    rc, out, root = outcomes[stage]
    assert rc == 3, out[-3000:]
    (line,) = [x for x in out.splitlines() if x.startswith("error: ")]
    assert f"stage {stage}: loss is" in line and " at step " in line, line
    assert not (root / "results").exists()
    stages = root / "artifacts" / "stages"
    failed = next(stages.glob(f"{stage}-*"))
    assert not (failed / "metrics.json").exists() and not list(failed.glob("*.pt"))  # nothing saved
    later = {"pretrain": ["oneshot", "retrain"], "admm": ["retrain"], "retrain": []}[stage]
    assert not any(next(stages.glob(f"{s}-*"), None) for s in later)  # nothing pruned or retrained after it
