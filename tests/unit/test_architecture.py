"""The layout's rules, read from the source: who may import whom, no import circles, small modules.

- The library (``twin/`` outside its command line ``twin/cli/``) never imports ``connectors``,
  ``dashboards`` or ``benchmarks``: it states what it needs as protocols and the command line
  wires the outside in. No part of ``twin/`` imports the simulated plants (``connectors.sim``)
  or ``benchmarks``: the twin learns from data alone.
- No import circle between the project's modules, counting every import: at module level,
  inside functions (a late import that hides a circle is still one) and under TYPE_CHECKING.
- Every module of ``twin/``, ``connectors/`` and ``dashboards/`` is at most 400 lines.

The graph is built with :mod:`ast` and checked with :mod:`graphlib` (standard library: one more
dependency such as import-linter would buy little for these three rules).
"""

from __future__ import annotations

import ast
import graphlib
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("twin", "connectors", "dashboards", "benchmarks")
SMALL = ("twin", "connectors", "dashboards")
MAX_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            out[_module_name(path)] = path
    return out


SOURCES = _sources()


def _imports(module: str, path: Path) -> set[str]:
    """Every project module ``module`` imports, wherever the import statement stands."""
    is_package = path.name == "__init__.py"
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package of this module, up level - 1
                package = module.split(".") if is_package else module.split(".")[:-1]
                package = package[: len(package) - (node.level - 1)]
                base = ".".join([*package, base] if base else package)
            # `from pkg import name`: the submodule pkg.name when there is one, else pkg
            targets = [
                f"{base}.{alias.name}" if f"{base}.{alias.name}" in SOURCES else base
                for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in SOURCES:  # `import a.b.c` of a name inside a.b
                target = target.rpartition(".")[0]
            if target and target != module:
                out.add(target)
    return out


GRAPH = {module: _imports(module, path) for module, path in SOURCES.items()}


def _under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_graph_sees_late_imports() -> None:
    """The checks below mean something only if imports inside functions are in the graph."""
    assert "twin.spec" in GRAPH["twin.cli.train"]  # imported inside the command's handler
    assert "connectors.collect" in GRAPH["twin.cli.collect"]  # likewise


def test_the_library_does_not_import_the_outside() -> None:
    bad = []
    for module, targets in GRAPH.items():
        if not _under(module, "twin"):
            continue
        for target in sorted(targets):
            outside = any(_under(target, p) for p in ("connectors", "dashboards", "benchmarks"))
            never = _under(target, "connectors.sim") or _under(target, "benchmarks")
            if never or (outside and not _under(module, "twin.cli")):
                bad.append(f"{module} imports {target}")
    assert not bad, "the library reaches outside its rooms:\n" + "\n".join(bad)


def test_no_import_circle() -> None:
    graph = {module: set(targets) for module, targets in GRAPH.items()}
    circles = []
    while len(circles) < 20:  # name every circle (up to 20), not just the first
        try:
            tuple(graphlib.TopologicalSorter(graph).static_order())
            break
        except graphlib.CycleError as exc:
            cycle = exc.args[1]  # [a, b, ..., a]: a imports b imports ... a
            circles.append(" -> ".join(reversed(cycle)))
            graph[cycle[1]].discard(cycle[0])
    assert not circles, "import circles:\n" + "\n".join(circles)


@pytest.mark.parametrize("package", SMALL)
def test_modules_stay_small(package: str) -> None:
    big = {
        module: n
        for module, path in SOURCES.items()
        if _under(module, package) and (n := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_command_line_starts_light() -> None:
    """``twin --help`` builds every command's parser (the simulated plants' too, through their
    entry points) without importing torch, asyncua, streamlit or a simulated plant."""
    code = (
        "import sys, twin.cli; twin.cli.build_parser(); "
        "print(sorted(m for m in ('torch', 'asyncua', 'streamlit', 'connectors.sim.base') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
