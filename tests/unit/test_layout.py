"""The layout: imports point one way, from the four top-level files down into the package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.support.helpers import ROOT

TOP_LEVEL = ("app", "config", "validation", "handlers")
PACKAGE = "plugnmeet_webhooks"


def _modules() -> dict[str, Path]:
    found = {name: ROOT / f"{name}.py" for name in TOP_LEVEL}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        if "migrations" in path.parts:
            continue  # Alembic loads these by path; they import only alembic and sqlalchemy
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _type_checking_only(tree: ast.Module) -> set[int]:
    """Return the line numbers of imports made only for the type checker."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    lines.add(inner.lineno)
    return lines


def _imports(name: str) -> set[str]:
    """Return the project modules ``name`` imports, anywhere in its body."""
    tree = ast.parse(MODULES[name].read_text())
    skip = _type_checking_only(tree)
    targets: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            targets.add(node.module)
            targets.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {t for t in targets if t in MODULES and t != name}


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles() -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module (or a self-loop)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_the_whole_project():
    assert len(MODULES) > 25
    assert "plugnmeet_webhooks.storage.committer" in GRAPH["plugnmeet_webhooks.runtime"]
    assert "plugnmeet_webhooks.runtime" in GRAPH["app"]


def test_no_import_cycles_among_the_projects_modules():
    assert _cycles() == []


def test_the_cycle_finder_finds_a_cycle():
    GRAPH["plugnmeet_webhooks.text"].add("app")
    try:
        assert _cycles()
    finally:
        GRAPH["plugnmeet_webhooks.text"].discard("app")


# Who may import whom: each layer sees only the layers under it.
LAYERS = {
    "config": set(),
    "validation": set(),
    f"{PACKAGE}.text": set(),
    f"{PACKAGE}.normalize": set(),
    f"{PACKAGE}.outbound": set(),
    # gunicorn's master loads the worker class, and the master knows only the settings.
    f"{PACKAGE}.serving": set(),
    # The plugNmeet API client knows the protocol and HTTP, nothing of storage or the ledger.
    f"{PACKAGE}.reconcile.api": {
        "config",
        f"{PACKAGE}.normalize",
        f"{PACKAGE}.outbound",
        f"{PACKAGE}.text",
    },
    f"{PACKAGE}.storage": {f"{PACKAGE}.storage", f"{PACKAGE}.text"},
    f"{PACKAGE}.ledger": {
        f"{PACKAGE}.ledger",
        f"{PACKAGE}.storage",
        f"{PACKAGE}.normalize",
        f"{PACKAGE}.text",
    },
}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_each_lower_layer_imports_only_what_lies_below_it(layer):
    for name, targets in GRAPH.items():
        if name == layer or name.startswith(layer + "."):
            outside = {
                t
                for t in targets
                if not any(t == a or t.startswith(a + ".") for a in LAYERS[layer])
            }
            assert outside == set(), f"{name} imports {sorted(outside)}"


def test_the_package_never_imports_the_app_or_the_handlers():
    for name, targets in GRAPH.items():
        if name.startswith(PACKAGE):
            assert not targets & {"app", "handlers"}, f"{name} imports {sorted(targets)}"


MASTER_HOOKS = ("on_starting", "child_exit", "on_exit", "_fail")


def test_the_gunicorn_master_imports_nothing_of_the_app():
    # Whatever the master imports, workers forked after a HUP would run from memory, not
    # from the code on disk: the master may know the settings, nothing more.
    tree = ast.parse((ROOT / "gunicorn.conf.py").read_text())
    imported: set[str] = set()
    for node in tree.body:
        scopes = [node]
        if isinstance(node, ast.FunctionDef) and node.name not in MASTER_HOOKS:
            continue  # a worker hook: it runs in the worker
        for scope in scopes:
            for inner in ast.walk(scope):
                if isinstance(inner, ast.Import):
                    imported.update(alias.name for alias in inner.names)
                elif isinstance(inner, ast.ImportFrom) and inner.module:
                    imported.add(inner.module)
    project = {name for name in imported if name.split(".")[0] in {*TOP_LEVEL, PACKAGE}}
    assert project == {"config"}
