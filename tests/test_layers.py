"""The package's layers point one way: the pure core imports no I/O, the office
library (site/) never reaches up into the live channel, the CLI or the console, and
no two modules import each other (a cycle). Read from the source with ast."""

from __future__ import annotations

import ast
from pathlib import Path

import accessd

ROOT = Path(accessd.__file__).parent


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved)."""
    pkg = ".".join(("accessd",) + path.relative_to(ROOT).parent.parts)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            names.update(f"{mod}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("accessd")}


def _module(path: Path) -> str:
    parts = ("accessd",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


GRAPH = {_module(p): _imports(p) for p in ROOT.rglob("*.py")}
MODULES = set(GRAPH)


def _edges(mod: str) -> set[str]:
    out = set()
    for name in GRAPH[mod]:
        while name and name not in MODULES:
            name = name.rpartition(".")[0]
        if name and name != mod and name != "accessd":
            out.add(name)
    return out


def test_the_office_library_does_not_reach_up():
    for mod in MODULES:
        if mod.startswith("accessd.site"):
            up = {e for e in _edges(mod)
                  if e.startswith(("accessd.live", "accessd.cli", "accessd.web"))}
            assert not up, f"{mod} imports {sorted(up)}"


def test_the_core_does_no_io():
    for mod in MODULES:
        if mod.startswith("accessd.core"):
            out = {e for e in _edges(mod) if not e.startswith("accessd.core")
                   and e not in ("accessd.errors",)}
            assert not out, f"{mod} imports {sorted(out)}"


def test_no_two_modules_import_each_other():
    pairs = [(a, b) for a in MODULES for b in _edges(a)
             if a < b and a in _edges(b) and not b.startswith(a + ".")
             and not a.startswith(b + ".")]
    assert not pairs, pairs
