"""The house plan, checked: imports only go down, and the facade keeps its names.

``core`` is below the features, the features are below the facade and the CLI, and no module
imports one that (directly or not) imports it back. Imports inside ``if TYPE_CHECKING:`` are
annotations, never executed, and are left out; lazy imports inside functions count.
"""

from __future__ import annotations

import ast
import importlib
import pkgutil
from pathlib import Path

import modelviz
from tests.helpers import ROOT

PACKAGE = ROOT / "modelviz"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _runtime_imports(path: Path, name: str, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    typing_only = {id(inner) for node in ast.walk(tree)
                   if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
                   for statement in node.body for inner in ast.walk(statement)}
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            candidates = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for candidate in candidates:
            known = candidate
            while known and known not in modules:
                known = known.rpartition(".")[0]
            if known and known != name:
                targets.add(known)
    return targets


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _runtime_imports(path, name, modules) for name, path in modules.items()}


def test_no_import_cycle() -> None:
    graph = _graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if target == "modelviz" or node == "modelviz":
                continue  # the package root only re-exports the facade, lazily
            if state.get(target) == 1:
                cycles.append([*path[path.index(target):], target])
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert cycles == []


def test_imports_only_go_down() -> None:
    """core imports no feature; a feature imports no CLI; nothing but the root imports api."""
    graph = _graph()
    bad = []
    for name, targets in graph.items():
        for target in targets:
            if target == "modelviz.api" and name != "modelviz":
                bad.append((name, target))
            if name.startswith("modelviz.core") and target.startswith(
                    ("modelviz.features", "modelviz.cli", "modelviz.api")):
                bad.append((name, target))
            if name.startswith("modelviz.features") and target.startswith("modelviz.cli"):
                bad.append((name, target))
    assert bad == []


def test_the_facade_keeps_its_names_after_every_feature_is_imported() -> None:
    """``modelviz.summary(...)`` is a function even once ``modelviz.features.summary`` loaded."""
    for module in pkgutil.walk_packages([str(PACKAGE / "features")], "modelviz.features."):
        importlib.import_module(module.name)
    for name in ("summary", "graph", "activations", "tensorboard", "export_onnx", "trace",
                 "prepare", "write_report", "memory", "profile"):
        assert callable(getattr(modelviz, name)), name
    # features.memory and features.profile are packages too: the functions must still win
    assert modelviz.summary.__module__ == modelviz.memory.__module__ == "modelviz.api"
    assert modelviz.profile.__module__ == "modelviz.api"


def test_the_depth_that_reaches_blocks_is_one_number() -> None:
    """summary's options keep it torch-free for start-up; graph and summary use the core one."""
    from modelviz.core import hierarchy
    from modelviz.features.summary import options

    assert options.MAX_REACH == hierarchy.MAX_REACH
