"""The folder is the map: plugins/conveyor/ holds exactly what MWAA runs (every module is reached
from a DAG file, none reaches local-only tooling), and local/ holds the rest."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "plugins"
LOCAL_ONLY = ("conveyor_local", "moto", "pgserver", "pytest", "fakesnow")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PLUGINS).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in (PLUGINS / "conveyor").rglob("*.py")}


def _imports(path: Path) -> set[str]:
    """Every module an `import` names anywhere in the file (function-level imports included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def _reached_from_dags() -> set[str]:
    todo = [name for dag in (ROOT / "dags").glob("*.py") for name in _imports(dag)]
    reached: set[str] = set()
    while todo:
        name = todo.pop()
        if name in MODULES and name not in reached:
            reached.add(name)
            todo += _imports(MODULES[name])
            parent = name.rpartition(".")[0]
            todo += [parent] if parent else []  # importing a.b runs a/__init__.py
    return reached


def test_every_module_in_plugins_is_used_by_a_dag():
    unused = sorted(set(MODULES) - _reached_from_dags())
    assert not unused, f"in plugins/ but no DAG reaches them (local-only? move them to local/): {unused}"


def test_nothing_in_plugins_imports_local_only_tooling():
    offenders = {
        name: sorted(i for i in _imports(path) if i.split(".")[0] in LOCAL_ONLY)
        for name, path in MODULES.items()
    }
    assert {name: found for name, found in offenders.items() if found} == {}


def test_the_reachability_check_can_fail():
    """A module nothing imports is found: the check above is not vacuous."""
    orphan = PLUGINS / "conveyor" / "_orphan_probe.py"
    MODULES["conveyor._orphan_probe"] = orphan
    try:
        assert "conveyor._orphan_probe" not in _reached_from_dags()
    finally:
        del MODULES["conveyor._orphan_probe"]
