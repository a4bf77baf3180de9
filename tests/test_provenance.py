"""Every result says what machine and what code made it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import torch

from admm_pruning.report.provenance import code_version, describe, note_code_version, provenance


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_code_version_names_the_commit_and_marks_a_dirty_tree(tmp_path, monkeypatch):
    monkeypatch.delenv("ADMM_CODE_COMMIT", raising=False)
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    head = _git(tmp_path, "rev-parse", "HEAD")
    assert code_version(tmp_path) == {"commit": head, "dirty": False}
    (tmp_path / "notes.txt").write_text("untracked files do not make the code dirty\n")
    assert code_version(tmp_path)["dirty"] is False
    (tmp_path / "a.py").write_text("x = 2\n")
    assert code_version(tmp_path) == {"commit": head, "dirty": True}


def test_outside_a_repository_the_commit_is_unknown(tmp_path, monkeypatch):
    monkeypatch.delenv("ADMM_CODE_COMMIT", raising=False)
    assert code_version(tmp_path / "nowhere") == {"commit": None, "dirty": None}
    assert "unknown commit" in describe({**provenance(repo=tmp_path / "nowhere")})


def test_a_copied_tree_records_the_commit_it_was_copied_from_as_unchecked(tmp_path, monkeypatch):
    monkeypatch.setenv("ADMM_CODE_COMMIT", "0123456789abcdef")
    assert code_version(tmp_path / "nowhere") == {"commit": "0123456789abcdef", "dirty": None}
    assert code_version()["commit"] == "0123456789abcdef"  # over a .git folder, which may be stale
    assert "git 0123456789 (copied tree, not checked for edits)" in describe(provenance(repo=tmp_path / "nowhere"))


def test_provenance_reports_this_process(tmp_path):
    p = provenance(repo=tmp_path / "nowhere")
    assert p["torch"] == torch.__version__ and p["cuda"] == torch.version.cuda
    assert p["threads"] == torch.get_num_threads() and p["device"] == "cpu" and p["gpu"] is None
    word = "thread" if p["threads"] == 1 else "threads"
    assert p["cpu"] and describe(p).startswith(f"Made on {p['cpu']}, {p['threads']} {word} (cpu), torch ")
    assert describe({**p, "threads": 1}).startswith(f"Made on {p['cpu']}, 1 thread (cpu)")


def test_a_run_records_the_commit_it_started_from_not_one_made_while_it_trained(tmp_path, monkeypatch):
    monkeypatch.delenv("ADMM_CODE_COMMIT", raising=False)
    _git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    _git(tmp_path, "add", "a.py")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "one")
    started = _git(tmp_path, "rev-parse", "HEAD")
    note_code_version(tmp_path)
    (tmp_path / "a.py").write_text("x = 2\n")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "two")
    assert code_version(tmp_path)["commit"] != started
    assert provenance(repo=tmp_path)["commit"] == started


def test_a_study_report_says_where_its_runs_were_made(tmp_path):

    from admm_pruning.analysis.report import made_on

    p = provenance(repo=tmp_path / "nowhere")
    runs = [{"provenance": p}, {"provenance": p}, {"provenance": {**p, "gpu": "NVIDIA H200"}}, {}]
    lines = made_on(runs)
    assert f"- 2 runs: {describe(p)}" in lines and "- 1 run: No provenance recorded (made by earlier code)." in lines
    assert any(line.startswith("- 1 run: Made on NVIDIA H200 (cpu)") for line in lines) and len(lines) == 3
