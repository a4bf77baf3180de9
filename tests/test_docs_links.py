"""Everything the README and docs/ link to is inside the repository: a fresh clone has no
../shared folder, so a link there (or to a file never committed) is broken for every user."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_link_is_a_file_in_the_repository(page: Path):
    tracked = set(subprocess.run(["git", "-C", str(ROOT), "ls-files"], capture_output=True, text=True,
                                 check=True).stdout.split())
    links = [t.split("#")[0] for t in LINK.findall(page.read_text()) if not t.startswith("#")]
    for target in links:
        assert "://" not in target, f"{page.name} links outside the repository: {target}"
        path = (page.parent / target).resolve()
        assert path.is_relative_to(ROOT), f"{page.name} links outside the repository: {target}"
        rel = path.relative_to(ROOT).as_posix()
        assert path.exists() and (path.is_dir() or rel in tracked), f"{page.name}: {target} is not a tracked file"


def test_the_readme_points_at_the_reference_page():
    assert "](docs/reference.md)" in (ROOT / "README.md").read_text()


def test_no_tracked_text_refers_to_the_reference_outside_the_repository():
    hits = subprocess.run(["git", "-C", str(ROOT), "grep", "-l", "shared/REFERENCE", "--", ":!results"],
                          capture_output=True, text=True).stdout.split()
    assert hits == [] or hits == ["tests/test_docs_links.py"], hits
