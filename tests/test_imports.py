"""Import hygiene: every module of src/ imports, the import graph has no cycle, the engine never
imports the RL package, and nothing but `python -m src.cli` imports the entry point."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path
from typing import Dict, List, Set

from conftest import REPO_ROOT, python

SRC = REPO_ROOT / "src"
#: The engine: simulation parameters, network, traffic, control, SUMO, metrics. It runs without src.rl.
ENGINE = ("src.params", "src.validation", "src.network", "src.traffic", "src.control", "src.sumo_integration",
          "src.metrics", "src.locations")


def module_files() -> Dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _imported(node: ast.AST, module: str, modules: Dict[str, Path]) -> List[str]:
    """Modules of src an import statement loads, with the packages it loads on the way."""
    names: List[str] = []
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names]
    loaded = []
    for name in names:
        parts = name.split(".")
        for k in range(1, len(parts) + 1):  # a.b.c loads a, a.b and a.b.c; its own packages are loaded already
            target = ".".join(parts[:k])
            if target in modules and target != module and not module.startswith(f"{target}."):
                loaded.append(target)
    return loaded


def import_graph(module_level_only: bool = True) -> Dict[str, Set[str]]:
    """module -> modules of src it imports (at import time, unless `module_level_only` is False)."""
    modules = module_files()
    graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text())
        nodes = [n for top in tree.body if not isinstance(top, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                 for n in ast.walk(top)] if module_level_only else list(ast.walk(tree))
        graph[module] = {t for node in nodes for t in _imported(node, module, modules)}
    return graph


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One import cycle as a path [a, b, ..., a], or [] when there is none."""
    state: Dict[str, int] = {}  # 1 on the current path, 2 done
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 2
        path.pop()
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


def test_find_cycle_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    graph = import_graph()
    assert len(graph) > 50 and "src.rl.config.experiment" in graph["src.rl.config.loader"]
    assert find_cycle(graph) == []


def test_no_cycles_even_through_imports_inside_functions():
    assert find_cycle(import_graph(module_level_only=False)) == []


def test_every_module_imports():
    modules = sorted(module_files())
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\nprint('ok')"
    proc = subprocess.run([python(), "-c", code, *modules], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr[-3000:]


def test_the_engine_does_not_reach_into_rl():
    graph = import_graph(module_level_only=False)
    for module, targets in graph.items():
        if any(module == e or module.startswith(f"{e}.") for e in ENGINE):
            assert not [t for t in targets if t.startswith("src.rl")], module
    from src.control.registry import BUILTIN

    assert all(target.startswith("src.control.") for target in BUILTIN.values())  # not even by name for importlib


def test_only_the_command_line_runs_src_cli():
    graph = import_graph(module_level_only=False)
    assert [m for m, targets in graph.items() if "src.cli" in targets] == []
