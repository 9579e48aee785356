"""The layering the code promises: central sees only the agent's wire contract; no cycles."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("agent", "central", "config", "drivers", "firmware_bridge", "rules")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """Project modules imported at module level (not inside functions: those are lazy)."""
    found: set[str] = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def graph() -> dict[str, set[str]]:
    modules = {
        module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }
    return {
        name: {m for m in top_level_imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }


def test_central_imports_nothing_of_the_agent_but_its_wire_contract() -> None:
    offending = {
        (name, imported)
        for name, imports in graph().items()
        if name.startswith("central")
        for imported in imports
        if imported.startswith("agent") and not imported.startswith("agent.wire")
    }
    assert not offending, sorted(offending)


def test_the_wire_contract_depends_on_nothing_else_of_the_project() -> None:
    outside = {
        (name, imported)
        for name, imports in graph().items()
        if name.startswith("agent.wire")
        for imported in imports
        if not imported.startswith("agent.wire")
    }
    assert not outside, sorted(outside)


def test_there_is_no_import_cycle() -> None:
    edges = graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(name) :], name]))
        if name in done:
            return
        for imported in sorted(edges.get(name, ())):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(edges):
        visit(name, [])
