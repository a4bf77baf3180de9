"""docs/configuration.md's key reference is generated from conf/ and must match it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from admm_pruning.analysis.config_keys import GROUPS, ROOT, read, rewrite, split_comment

FILES = [ROOT / "conf" / "train.yaml", *(p for g in GROUPS for p in sorted((ROOT / "conf" / g).glob("*.yaml")))]


def leaves(node: object, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return set().union(*(leaves(v, f"{prefix}{k}.") for k, v in node.items()))
    return {prefix[:-1]}


def test_the_committed_page_is_what_the_configs_generate():
    page = ROOT / "docs" / "configuration.md"
    assert page.read_text() == rewrite(page), "run: python -m admm_pruning.analysis.config_keys"


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_key_of_every_file_has_a_row_with_its_value(path: Path):
    raw = yaml.safe_load(path.read_text()) or {}
    raw.pop("defaults", None)
    raw.pop("hydra", None)
    _, _, rows = read(path)
    found = {key: value for key, value, _ in rows}
    assert leaves(raw) <= set(found)
    for key in leaves(raw):
        node = raw
        for part in key.split("."):
            node = node[part]
        if isinstance(node, (int, float, str)) and not isinstance(node, bool):
            assert yaml.safe_load(found[key]) == node, key


def test_comments_are_told_from_values():
    assert split_comment(" 0.5   # a rate") == ("0.5", "a rate")
    assert split_comment(" '#fff'  # a colour") == ("'#fff'", "a colour")
    assert split_comment(" ${oc.env:A,#}") == ("${oc.env:A,#}", "")


def test_a_key_takes_its_inline_comment_else_the_lines_above(tmp_path):
    f = tmp_path / "x.yaml"
    f.write_text("# the file\nname: x\n\n# about rho\n# second line\nrho: 1  # inline wins\n# about eps\neps: 2\n"
                 "opt:\n  lr: 0.1\n")
    assert read(f) == ("the file", [], [("name", "x", ""), ("rho", "1", "inline wins"), ("eps", "2", "about eps"),
                                        ("opt.lr", "0.1", "")])
