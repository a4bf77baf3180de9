"""benchmarks/gpu_check.sh, the script a session with a GPU runs at once: its dry run on CPU lists
every step, runs the CPU-sized AlexNet step and writes nothing under results/."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT


def test_the_gpu_check_dry_run_lists_its_steps_and_writes_nothing():
    before = sorted(p.name for p in (ROOT / "results" / "benchmarks").iterdir())
    proc = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--dry-run"], cwd=ROOT,
                          env={"PY": sys.executable, "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    steps = [line.split()[1] for line in proc.stdout.splitlines() if line.startswith("== ")]
    assert steps == ["fp16_fused_cuda", "bf16_pipeline", "bench_gpu", "alexnet_throughput", "lenet5_71x_tf_recipe"]
    assert proc.stdout.rstrip().endswith("dry run: ok")
    assert sorted(p.name for p in (ROOT / "results" / "benchmarks").iterdir()) == before
