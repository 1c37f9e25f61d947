"""The project's import graph: `core` imports neither process, the API never imports the worker,
the client talks only HTTP, and no module imports itself in a circle."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "service", "worker", "dirconv")
FORBIDDEN = {
    "core": {"service", "worker", "dirconv"},
    "service": {"worker", "dirconv"},
    "worker": {"service", "dirconv"},
    "dirconv": {"core", "service", "worker"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """Project modules that `module` imports, at any depth of its code."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] in PACKAGES}


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in PACKAGES for p in (REPO_ROOT / pkg).rglob("*.py")}
    return {
        module: {name for name in _imports(path, module) if name in files and name != module}
        for module, path in files.items()
    }


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_imports_only_what_its_layer_allows(package):
    graph = _graph()
    crossings = sorted(
        f"{module} -> {target}"
        for module, targets in graph.items()
        if module.split(".")[0] == package
        for target in targets
        if target.split(".")[0] in FORBIDDEN[package]
    )
    assert crossings == []


def test_no_module_imports_itself_in_a_circle():
    graph = _graph()
    cycles, state = [], {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" -> ".join([*path[path.index(target) :], target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


WORKER_ONLY = {"torch", "numba", "llvmlite"}
"""Third-party packages of the `worker` extra: the API image has none of them."""
API_SIDE = ("core", "service", "dirconv")


def _third_party_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_api_side_imports_no_worker_only_package():
    found = sorted(
        f"{path.relative_to(REPO_ROOT)} -> {name}"
        for package in API_SIDE
        for path in (REPO_ROOT / package).rglob("*.py")
        for name in _third_party_imports(path) & WORKER_ONLY
    )
    assert found == []


def test_importing_every_api_module_loads_neither_torch_nor_numba():
    # Catches a dependency that pulls torch in behind our back, which the AST check cannot see.
    script = (
        "import importlib, pkgutil, sys\n"
        f"for package in {API_SIDE!r}:\n"
        "    for module in pkgutil.walk_packages(importlib.import_module(package).__path__,\n"
        "                                        package + '.'):\n"
        "        importlib.import_module(module.name)\n"
        f"print(sorted(set({sorted(WORKER_ONLY)!r}) & set(sys.modules)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
