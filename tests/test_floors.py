"""The package is built in floors: a module imports only from its own floor or the ones below, and
no two modules import each other, however indirectly (type-only imports count: a reader follows
them too). A new module must be given a floor here, so the layering is a decision, not an accident."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "admm_pruning"

# floor of each subpackage or top-level module; lower floors never import higher ones
FLOORS = {
    "foundations": 0,  # file IO, hashes, the user-facing errors
    "models": 1, "sparsity": 1, "data": 1, "export": 1,  # networks, the math, data sets, formats
    "training": 2, "store": 2, "api": 2,  # Lightning loops, the stage cache, the plain-PyTorch API
    "callback": 3, "pruners": 3, "report": 3, "config": 3, "plan": 3, "sensitivity": 3, "wandb_runs": 3,
    "analysis": 4, "tuning": 4,  # read finished runs
    "pipeline": 5, "train": 5,  # the command line
}


def module_name(path: Path, package: Path) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """Every admm_pruning module ``path`` imports, at any depth of its code."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("admm_pruning"):
            found |= {f"{node.module}.{a.name}" for a in node.names} | {node.module}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("admm_pruning")}
    return found


def graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = {module_name(p, package): p for p in package.rglob("*.py")}
    return {name: {m for m in imports(p) if m in modules and m != name} for name, p in modules.items()}


def floor(module: str) -> int | None:
    parts = module.split(".")
    return FLOORS.get(parts[1]) if len(parts) > 1 else None


def test_every_module_has_a_floor():
    assert [m for m in graph() if m != "admm_pruning" and floor(m) is None] == []


def climbs(g: dict[str, set[str]]) -> list[str]:
    return [f"{m} (floor {floor(m)}) -> {d} (floor {floor(d)})" for m, deps in g.items() for d in deps
            if floor(d) is not None and floor(m) is not None and floor(d) > floor(m)]


def reaches(g: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        if m == goal:
            return True
        if m not in seen:
            seen.add(m)
            todo.extend(g.get(m, ()))
    return False


def circles(g: dict[str, set[str]]) -> list[str]:
    """Every import ``m -> d`` on a circle: ``d`` leads back to ``m``."""
    return sorted(f"{m} -> {d}" for m, deps in g.items() for d in deps if reaches(g, d, m))


def test_no_import_runs_up_a_floor():
    assert climbs(graph()) == []


def test_no_import_circle():
    assert circles(graph()) == []


def test_the_checks_see_a_circle_and_a_climb(tmp_path):
    """A package with one type-only circle and one climb (training -> pipeline) is caught."""
    pkg = tmp_path / "admm_pruning"
    (pkg / "training").mkdir(parents=True)
    (pkg / "training" / "a.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                           "    from admm_pruning.training.b import B\n")
    (pkg / "training" / "b.py").write_text("from admm_pruning.training import a\nimport admm_pruning.pipeline\n")
    (pkg / "pipeline.py").write_text("")
    g = graph(pkg)
    assert circles(g) == ["admm_pruning.training.a -> admm_pruning.training.b",
                          "admm_pruning.training.b -> admm_pruning.training.a"]
    assert climbs(g) == ["admm_pruning.training.b (floor 2) -> admm_pruning.pipeline (floor 5)"]
