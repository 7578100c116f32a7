"""The shape of the package: the library never imports the lab, the import graph has no cycle, and no
module imports another module's private (underscore) names."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "anode"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
LIBRARY = sorted(m for m in MODULES if not (m == "anode.lab" or m.startswith("anode.lab.") or m == "anode.__main__"))


def _imports(name: str) -> list[tuple[str, str]]:
    """(imported module, imported name or "") of every anode import in a module, function-level ones included."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] == "anode":
                found += [(target, alias.name) for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [(alias.name, "") for alias in node.names if alias.name.split(".")[0] == "anode"]
    return found


def _edges(name: str) -> set[str]:
    """The anode modules `name` imports (a `from pkg import mod` counts as importing `pkg.mod`)."""
    out = set()
    for target, imported in _imports(name):
        full = f"{target}.{imported}"
        out.add(full if full in MODULES else target)
    return {m for m in out if m in MODULES and m != name}


def test_the_library_never_imports_the_lab_statically() -> None:
    offenders = [f"{name} imports {target}" for name in LIBRARY for target, _ in _imports(name)
                 if target == "anode.lab" or target.startswith("anode.lab.")]
    assert not offenders, offenders


def test_importing_every_library_module_loads_no_lab_module() -> None:
    code = ("import importlib, json, sys\n"
            f"for name in {LIBRARY!r}:\n"
            "    importlib.import_module(name)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'anode.lab' or m.startswith('anode.lab.'))))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=600,
                         env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.splitlines()[-1]) == []
    assert len(LIBRARY) > 40  # every library module was imported, not an empty list


def test_the_import_graph_has_no_cycle() -> None:
    graph = {name: _edges(name) for name in MODULES}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_no_private_name_is_imported_from_another_module() -> None:
    offenders = [f"{name}: {imported} from {target}" for name in MODULES for target, imported in _imports(name)
                 if imported.startswith("_") and not imported.startswith("__")]
    assert not offenders, offenders


def test_version_comes_from_a_module_that_imports_nothing() -> None:
    tree = ast.parse((PACKAGE / "version.py").read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
    import anode
    from anode.version import __version__
    assert anode.__version__ == __version__
