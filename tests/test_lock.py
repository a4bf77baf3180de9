"""requirements.lock is the environment `make install` builds: exact versions with hashes, inside
pyproject.toml's ranges, and the environment the tests run in."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from conftest import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def locked() -> dict[str, tuple[str, list[str]]]:
    """name -> (version, sha256 hashes) of every entry of the lock."""
    entries = {}
    for block in re.split(r"\n(?=\S)", (ROOT / "requirements.lock").read_text()):
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", block)
        if match:
            entries[canonicalize_name(match[1])] = (match[2], re.findall(r"--hash=sha256:([0-9a-f]{64})", block))
    return entries


def wanted() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    return [Requirement(r) for r in (*project["dependencies"], *extras["dev"], *extras["slurm"])]


def test_every_requirement_is_locked_inside_its_range_with_hashes():
    lock = locked()
    assert len(lock) > 50  # the whole tree, not only the direct requirements
    for req in wanted():
        version, hashes = lock[canonicalize_name(req.name)]
        assert req.specifier.contains(version, prereleases=True), f"{req} locked at {version}"
    assert all(hashes for _, hashes in lock.values())


def make_install(*args: str) -> str:
    out = subprocess.run(["make", "-n", "install", "VENV=/nonexistent-venv", *args], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    return out.stdout


def test_make_install_installs_the_lock_and_only_the_lock():
    commands = make_install()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in commands
    assert "pip install --no-deps --no-build-isolation -e ." in commands
    assert "[dev,slurm]" not in commands
    # CPU wheels (+cpu versions) cannot match the lock's hashes: that install takes the ranges
    assert "-r requirements.lock" not in make_install("TORCH_INDEX=https://download.pytorch.org/whl/cpu")


def test_the_tests_run_in_the_locked_environment():
    """Every locked package is installed at its locked version (a TORCH_INDEX install, whose
    versions carry a local label such as +cpu, is the documented exception)."""
    differ = []
    for name, (version, _) in locked().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            differ.append(f"{name} missing")
            continue
        if installed != version and "+" not in installed:
            differ.append(f"{name} {installed} != {version}")
    assert differ == []
