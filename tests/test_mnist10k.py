"""Real data: the mnist10k protocol on the official MNIST test images."""

from admm_pruning.pipeline import run_experiment
from conftest import compose_cfg


def test_lenet300_at_the_23x_preset_on_real_mnist10k(shared_data_dir, out_dirs):
    cfg = compose_cfg([
        "experiment=lenet300_admm_23x", "data=mnist10k", f"data.data_dir={shared_data_dir}",
        "logger=csv", "trainer.accelerator=cpu", *out_dirs,
        # a shortened recipe: 4 + 6 x 1 + 4 epochs instead of 18 + 30 x 4.5 + 18
        "pretrain.epochs=4", "pruner.iterations=6", "pruner.epochs_per_iteration=1", "retrain.epochs=4",
    ])
    s = run_experiment(cfg)
    assert s["compression"] == 266200 / 11628  # 9408 + 2100 + 120 kept weights, exactly
    assert [s["per_layer"][n]["nonzero"] for n in ("fc1", "fc2", "fc3")] == [9408, 2100, 120]
    assert s["dense_acc"] > 0.93
    assert s["final_acc"] > 0.93 and s["final_acc"] > s["dense_acc"] - 0.015
