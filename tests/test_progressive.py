"""Progressive ADMM rounds, automatic per-layer targets and the connectivity guard."""

import pytest
import torch

from admm_pruning.models.lenet import LeNet5, LeNet300
from admm_pruning.pruners.progressive import round_targets
from admm_pruning.report.connectivity import connectivity
from admm_pruning.sparsity.profiles import global_magnitude_profile, sensitivity_profile
from admm_pruning.sparsity.projections import keep_count


def test_round_targets_step_chain_shares_prefixes():
    assert round_targets(71.0, 3.0) == [3.0, 9.0, 27.0, 71.0]
    assert round_targets(167.0, 3.0) == [3.0, 9.0, 27.0, 81.0, 167.0]
    assert round_targets(4.0, 3.0) == [4.0]  # 3 > 4 / sqrt(3): no sliver round before 4x
    assert round_targets(48.0, 3.0, [4, 16, 48]) == [4.0, 16.0, 48.0]
    # a list ending at the nominal target takes the final compression the kept counts give
    assert round_targets(166.9906, 3.0, [3, 9, 27, 81, 116, 167]) == [3.0, 9.0, 27.0, 81.0, 116.0, 166.9906]
    with pytest.raises(ValueError, match="must increase"):  # 166.995 would sit above the final 166.99
        round_targets(166.9906, 3.0, [3, 9, 27, 81, 166.995, 167])


def test_round_targets_with_a_round_count_are_geometric_and_end_at_the_target():
    assert round_targets(512.0, 3.0, rounds=3) == pytest.approx([8.0, 64.0, 512.0])
    assert round_targets(4.0, 3.0, rounds=2) == pytest.approx([2.0, 4.0])
    assert round_targets(4.0, 3.0, rounds=2)[-1] == 4.0  # the final target exactly, not 4^(2/2) rounded
    assert len(round_targets(16.0, 3.0, rounds=4)) == len(round_targets(256.0, 3.0, rounds=4)) == 4


@pytest.mark.parametrize("rounds, targets, match", [(0, None, "expected a whole number"),
                                                    (2.5, None, "expected a whole number"),
                                                    (2, [4, 16], "give one of them")])
def test_round_targets_refuse_a_bad_round_count(rounds, targets, match):
    with pytest.raises(ValueError, match=f"pruner.*{match}"):
        round_targets(16.0, 3.0, targets, rounds)


@pytest.mark.parametrize("bad", [[16, 4, 48], [4, 16, 40], [4, 16, 47.9]])
def test_round_targets_refuses_bad_lists(bad):
    with pytest.raises(ValueError, match="pruner.targets"):
        round_targets(48.0, 3.0, bad)


def test_sensitivity_profile_known_answer():
    # Layer a breaks below keep 0.5, b tolerates 0.01 with a 5-point drop.
    result = {"dense_val_acc": 0.9, "levels": [0.5, 0.1, 0.01],
              "acc": {"a": {"0.5": 0.9, "0.1": 0.5, "0.01": 0.1},
                      "b": {"0.5": 0.9, "0.1": 0.9, "0.01": 0.85}}}
    sizes = {"a": 100, "b": 1000}
    # Unscaled profiles: tol 0 -> {.5, .1} 7.3x; tol .05 -> {.5, .01} 18.3x (nearest 20x in log);
    # tol .4 -> 55x. Scaled to 20x = 55 kept weights: 45.8 + 9.2 -> largest remainder -> 46 + 9.
    keep, tol = sensitivity_profile(result, sizes, ["a", "b"], 20.0)
    assert tol == pytest.approx(0.05)
    assert keep == {"a": 0.46, "b": 0.009}
    assert sum(keep_count(sizes[n], f) for n, f in keep.items()) == 55


def test_global_magnitude_profile_hits_the_target_exactly():
    torch.manual_seed(0)
    model = LeNet300()
    keep = global_magnitude_profile(model, ["fc1", "fc2", "fc3"], 50.0)
    sizes = {"fc1": 235200, "fc2": 30000, "fc3": 1000}
    assert sum(keep_count(sizes[n], f) for n, f in keep.items()) == round(266200 / 50)
    assert all(0 < f <= 1 for f in keep.values())


def test_connectivity_detects_a_cut_off_class():
    model = LeNet300()
    masks = {n: torch.ones_like(m.weight, dtype=torch.bool)
             for n, m in [("fc1", model.fc1), ("fc2", model.fc2), ("fc3", model.fc3)]}
    assert connectivity(model, masks)["disconnected"] is False
    masks["fc3"][7] = False  # class 7 has no inputs left
    rep = connectivity(model, masks)
    assert rep["disconnected"] is True and rep["per_layer"]["fc3"]["dead_units"] == 1
    # Cut deeper: fc2 unit 3 alive only through fc1 units that are all dead.
    masks = {"fc1": torch.zeros(300, 784, dtype=torch.bool)}
    masks["fc1"][0, 0] = True
    masks["fc2"] = torch.zeros(100, 300, dtype=torch.bool)
    masks["fc2"][:, 1] = True  # every fc2 unit reads only fc1 unit 1, which is dead
    rep = connectivity(model, masks)
    assert rep["per_layer"]["fc1"]["dead_units"] == 299
    assert rep["per_layer"]["fc2"]["dead_units"] == 100
    assert rep["disconnected"] is True


def test_connectivity_follows_conv_channels_through_the_flatten():
    model = LeNet5()
    masks = {"conv2": torch.ones(50, 20, 5, 5, dtype=torch.bool)}
    masks["conv2"][1:] = False  # only channel 0 survives: fc1 inputs 0..15
    masks["fc1"] = torch.zeros(500, 800, dtype=torch.bool)
    masks["fc1"][:250, 0] = True  # reads channel 0 (alive)
    masks["fc1"][250:, 16] = True  # reads channel 1 (dead)
    rep = connectivity(model, masks)
    assert rep["per_layer"]["conv2"]["dead_units"] == 49
    assert rep["per_layer"]["fc1"]["dead_units"] == 250
    assert rep["disconnected"] is False  # fc2 is dense: every class still reaches a live unit


def _progressive_cfg(fake_data_dir, out_dirs, compression, *extra):
    from conftest import TINY_BASE, compose_cfg

    return compose_cfg(["experiment=lenet5_progressive", "data=mnist", f"data.data_dir={fake_data_dir}",
                        "data.verify_md5=false",
                        "data.val_size=200", "data.download=false", *TINY_BASE, "retrain.epochs=1",
                        "pruner.iterations=2", "pruner.epochs_per_iteration=0.5", "pruner.round_retrain_epochs=1",
                        f"prune.compression={compression}", *out_dirs, *extra])


def test_progressive_rounds_nest_hit_the_target_and_reuse_shared_prefixes(fake_data_dir, out_dirs):
    import json
    from pathlib import Path

    from admm_pruning.foundations.files import load_tensors
    from admm_pruning.pipeline import run_experiment

    s = run_experiment(_progressive_cfg(fake_data_dir, out_dirs, 20))
    assert s["compression"] == 20.0 and s["nonzero_weights"] == 430500 // 20
    prune = json.loads((Path(s["stage_dirs"]["admm_progressive"]) / "metrics.json").read_text())
    assert [r["compression"] for r in prune["rounds"]] == [430500 / round(430500 / c) for c in (3, 9, 20)]
    # Each round prunes inside the previous round's support: the masks are nested.
    masks = [load_tensors(Path(r["stage_dir"]) / "masks.pt") for r in prune["rounds"]]
    for outer, inner in zip(masks, masks[1:], strict=False):
        for name in inner:
            assert not (inner[name] & ~outer[name]).any(), name
    assert s["pruning_epochs"] == 3 * 2 * 0.5 + 2 * 1  # ADMM in 3 rounds + 2 retrainings between them
    # A higher target reuses the rounds the two chains share (3x, 9x) and trains only the new ones.
    t = run_experiment(_progressive_cfg(fake_data_dir, out_dirs, 40))
    again = json.loads((Path(t["stage_dirs"]["admm_progressive"]) / "metrics.json").read_text())
    assert [r["cached"] for r in again["rounds"]] == [True, True, False]  # chain 3x, 9x, 40x
    assert t["compression"] == 430500 / round(430500 / 40)


def test_rounds_trained_on_another_split_are_never_reused(fake_data_dir, out_dirs, tmp_path):
    """A fixed dense checkpoint makes every round start from the same weights; only the data split
    differs, so nothing may be reused (the round keys once left the data out)."""
    import json
    from pathlib import Path

    from admm_pruning.pipeline import run_experiment

    ckpt = tmp_path / "dense.pt"
    torch.manual_seed(0)
    torch.save(LeNet5().state_dict(), ckpt)
    runs = [run_experiment(_progressive_cfg(fake_data_dir, out_dirs, 20, f"+pretrain.checkpoint={ckpt}",
                                            f"data.split_seed={split}")) for split in (0, 1)]
    rounds = [json.loads((Path(s["stage_dirs"]["admm_progressive"]) / "metrics.json").read_text())["rounds"]
              for s in runs]
    assert [r["cached"] for r in rounds[1]] == [False, False, False]
    assert {r["stage_dir"] for r in rounds[0]}.isdisjoint(r["stage_dir"] for r in rounds[1])


def test_sensitivity_profile_end_to_end_is_exact_and_reuses_the_scan(fake_data_dir, out_dirs, tmp_path):
    import json
    from pathlib import Path

    from admm_pruning.pipeline import run_experiment
    from conftest import TINY, compose_cfg

    def cfg(c):
        return compose_cfg(["experiment=lenet5_admm_71x", "data=mnist", f"data.data_dir={fake_data_dir}",
                            "data.verify_md5=false",
                            "data.val_size=200", "data.download=false", *TINY, *out_dirs,
                            "prune.profile=sensitivity", f"prune.compression={c}",
                            "prune.sensitivity_levels=[0.5,0.1,0.02]"])

    s = run_experiment(cfg(30))
    assert s["nonzero_weights"] == round(430500 / 30)
    assert s["profile"]["profile"] == "sensitivity" and s["keep"] != {"conv1": 0.2, "conv2": 0.08, "fc1": 0.009,
                                                                      "fc2": 0.07}
    out = tmp_path / "results" / "lenet5_admm_71x" / "mnist" / "seed0"
    assert (out / "sensitivity.png").stat().st_size > 0
    assert "| fc1 |" in (out / "sensitivity.md").read_text()
    scan = json.loads((Path(s["profile"]["scan_dir"]) / "metrics.json").read_text())
    assert set(scan["acc"]) == {"conv1", "conv2", "fc1", "fc2"} and scan["levels"] == [0.5, 0.1, 0.02]
    t = run_experiment(cfg(60))  # same dense model: the scan is reused, only the split changes
    assert t["profile"]["scan_dir"] == s["profile"]["scan_dir"]
    assert t["nonzero_weights"] == round(430500 / 60)
    assert set(t["connectivity"]["per_layer"]) == {"conv1", "conv2", "fc1", "fc2"}


def test_profile_needs_a_compression_target():
    from admm_pruning.config import validate
    from admm_pruning.foundations.errors import ConfigError
    from conftest import compose_cfg

    cfg = compose_cfg(["experiment=lenet5_admm_71x", "prune.profile=sensitivity", "prune.compression=null"])
    with pytest.raises(ConfigError, match="prune.compression"):
        validate(cfg, LeNet5)
    cfg = compose_cfg(["experiment=lenet5_admm_71x", "prune.profile=magic", "prune.compression=10"])
    with pytest.raises(ConfigError, match="prune.profile='magic'"):
        validate(cfg, LeNet5)


def test_no_round_keeps_less_of_a_layer_than_the_final_targets():
    """A sensitivity profile can give a layer more than the preset profile's scaled rounds would:
    the rounds then keep at least the final amount, so the final target stays reachable."""
    from admm_pruning.pruners.progressive import ProgressiveADMMPruner

    sizes = {"conv1": 500, "conv2": 25000, "fc1": 400000, "fc2": 5000}
    final = {"conv1": 0.9, "conv2": 0.01, "fc1": 0.005, "fc2": 0.05}  # conv1 kept almost whole
    pruner = ProgressiveADMMPruner(retrain_optimizer=None, profile={"conv1": 0.2, "conv2": 0.08, "fc1": 0.009,
                                                                    "fc2": 0.07})
    rounds = pruner.rounds(sizes, final)
    assert len(rounds) > 2 and rounds[-1] == final
    assert all(r[n] >= final[n] for r in rounds for n in final)
    assert rounds[-2]["conv1"] == 0.9 and rounds[-2]["fc1"] > final["fc1"]  # unclamped: about a fifth of conv1


def test_bad_progressive_and_round_settings_are_config_errors():
    from admm_pruning.foundations.errors import ConfigError
    from admm_pruning.pruners.progressive import ProgressiveADMMPruner

    with pytest.raises(ConfigError, match="pruner.step=1: must be > 1"):
        ProgressiveADMMPruner(retrain_optimizer=None, step=1)
    with pytest.raises(ConfigError, match=r"pruner.targets=\[9.0, 3.0\]: must increase"):
        ProgressiveADMMPruner(retrain_optimizer=None, targets=[9, 3]).rounds({"fc1": 1000}, {"fc1": 1 / 3})


def test_hans_dropout_rule_scales_every_rounds_retraining_and_the_last(fake_data_dir, out_dirs):
    """retrain.dropout_scaled_by=fc1: each retraining (the rounds' and the final one) drops out at
    0.5 x sqrt(the fraction of fc1 its masks keep), and the stage keys record that rate."""
    import json
    from pathlib import Path

    from admm_pruning.foundations.files import load_tensors
    from admm_pruning.pipeline import run_experiment

    s = run_experiment(_progressive_cfg(fake_data_dir, out_dirs, 20, "retrain.dropout_scaled_by=fc1"))
    prune = json.loads((Path(s["stage_dirs"]["admm_progressive"]) / "metrics.json").read_text())
    for r in prune["rounds"][:-1]:
        stage = Path(r["stage_dir"])
        fc1 = load_tensors(stage / "masks.pt")["fc1"]
        rate = json.loads((stage / "settings.json").read_text())["recipe"]["dropout"]
        assert rate == pytest.approx(0.5 * (int(fc1.sum()) / fc1.numel()) ** 0.5) and rate < 0.5
    assert s["retrain_recipe"]["dropout"] == pytest.approx(0.5 * s["per_layer"]["fc1"]["kept"] ** 0.5, rel=1e-3)
