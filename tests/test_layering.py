"""The package's layering: no import circle, and no import that runs up a floor.

FLOORS below is the one statement of the architecture: the package's rooms (a top-level
module, or a subpackage with everything in it) on floors, top first. A room may import rooms
on the floors below its own, never one on its own floor or above; inside a room modules import
each other freely, but no set of modules (in the whole package) may import each other in a
circle. Every import counts, also one inside a function (a lazy import is still a dependency)
and one under ``TYPE_CHECKING``. README.md's "Architecture" section lists the same floors; a
test holds the two together.

Adding a top-level module or subpackage: put it on a floor here and in the README.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "sbc_deploy"

FACE = PACKAGE
"""The package's face (sbc_deploy/__init__.py) is a room of its own."""

FLOORS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("entry", ("__main__",)),
    ("command line and API", ("cli", FACE)),
    ("torch modules", ("torch_oneshot",)),
    ("pipelines", ("pipeline", "spikes")),
    ("around the stages", ("describe", "guards", "memory", "validate")),
    ("report", ("report",)),
    ("stages that use a room below", ("calibrate", "check")),
    ("stages", ("bundled", "compress", "exporters")),
    ("sources and simulators", ("data", "frontends", "sim")),
    ("targets", ("targets",)),
    ("foundations", ("devices", "distributed", "ir", "outputs", "safeio")),
    ("files", ("fileio", "resources")),
    ("ground", ("errors", "version")),
    ("text", ("untrusted",)),
)
"""Floors, top first: (name, rooms). Why the order departs from DESIGN.md's "stages do not
import each other": calibrate fills compress's Hessian accumulators (compress/hessian.py), so
it stands above compress; check asks the netx exporter what it folds (plan_netx), so it stands
above exporters; report names layers by check's mapping (fan-in, potential), so it stands
above check. The rooms around the stages (validate, memory, guards, describe) read several
stages and are read only by the pipeline and the CLI."""


@dataclass(frozen=True)
class Import:
    """``importer`` imports ``imported`` (both modules of the package) at ``path:line``."""

    importer: str
    imported: str
    path: str
    line: int


def modules(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of ``root/package``."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(name: str, known: dict[str, Path]) -> str | None:
    """The module that ``import name`` loads last: the longest known prefix of ``name``."""
    while name and name not in known:
        name = name.rpartition(".")[0]
    return name or None


def imports(root: Path, package: str = PACKAGE) -> list[Import]:
    """Every import of one package module by another, wherever it stands in the file."""
    known = modules(root, package)
    found = []
    for module, path in known.items():
        here = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parent = here[:len(here) - node.level + 1]
                    base = ".".join(parent + ([base] if base else []))
                # ``from pkg import sub`` imports the submodule; ``from mod import name`` mod
                names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                         for alias in node.names]
            for name in names:
                if name == package or name.startswith(package + "."):
                    target = _resolve(name, known)
                    edge = Import(module, target or "", str(path.relative_to(root)),
                                  node.lineno)
                    if target is not None and target != module and edge not in found:
                        found.append(edge)
    return found


def room(module: str, package: str = PACKAGE) -> str:
    """``sbc_deploy.compress.obs`` -> ``compress``; the package itself (its face) is the room
    named after the package."""
    return package if module == package else module.split(".")[1]


def floor_of(floors: tuple[tuple[str, tuple[str, ...]], ...] = FLOORS) -> dict[str, int]:
    """Room -> its floor's height (the ground is 0)."""
    return {r: len(floors) - 1 - k for k, (_, rooms) in enumerate(floors) for r in rooms}


def circles(edges: list[Import]) -> list[list[str]]:
    """The modules that import each other in a circle (strongly connected, more than one)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.importer, set()).add(e.imported)
        graph.setdefault(e.imported, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def violations(edges: list[Import], known: dict[str, Path],
               floors: tuple[tuple[str, tuple[str, ...]], ...] = FLOORS,
               package: str = PACKAGE) -> Iterator[str]:
    """Every module on no floor, and every import between rooms that does not go down."""
    height = floor_of(floors)
    for module in sorted(known):
        if room(module, package) not in height:
            yield (f"{module} is in room '{room(module, package)}', which is on no floor "
                   "(add it to FLOORS in tests/test_layering.py and to README.md's list)")
    for e in edges:
        a, b = room(e.importer, package), room(e.imported, package)
        if a == b or a not in height or b not in height:
            continue
        if height[b] >= height[a]:
            where = "its own floor" if height[b] == height[a] else "a floor above"
            yield (f"{e.path}:{e.line}: {e.importer} (floor '{floors[-1 - height[a]][0]}') "
                   f"imports {e.imported}, in room '{b}' on {where}")


# --------------------------------------------------------------------------- the package


def test_no_import_circle() -> None:
    found = circles(imports(ROOT))
    assert not found, "modules that import each other in a circle: " + "; ".join(
        " <-> ".join(c) for c in found)


def test_every_import_goes_down_a_floor() -> None:
    found = list(violations(imports(ROOT), modules(ROOT)))
    assert not found, "imports against the floors:\n" + "\n".join(found)


def test_every_room_on_one_floor() -> None:
    rooms = [r for _, floor in FLOORS for r in floor]
    assert len(rooms) == len(set(rooms)), "a room stands on two floors"
    present = {room(m) for m in modules(ROOT)}
    assert set(rooms) <= present, f"floors name rooms that do not exist: {set(rooms) - present}"


def readme_floors(text: str) -> list[tuple[str, tuple[str, ...]]]:
    """The floors listed in README.md's Architecture section, top first: lines
    ``N. **name**: `room`, `room`, ...`` between ``## Architecture`` and the next ``## ``."""
    if "\n## Architecture" not in text:
        return []
    section = text.split("\n## Architecture", 1)[1].split("\n## ", 1)[0]
    listed = []
    for line in section.splitlines():
        match = re.match(r"\s*\d+\.\s+\*\*(.+?)\*\*:\s*(.*)", line)
        if match:
            names = re.findall(r"`([^`]+)`", match.group(2).split(" -- ")[0])
            listed.append((match.group(1), tuple(sorted(names))))
    return listed


def test_readme_lists_the_same_floors() -> None:
    listed = readme_floors((ROOT / "README.md").read_text())
    expected = [(name, tuple(sorted(rooms))) for name, rooms in FLOORS]
    assert listed == expected


# --------------------------------------------------------------------------- the checks themselves


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checks_find_a_circle_an_upward_import_and_a_homeless_module(tmp_path: Path) -> None:
    """A small package with one of each fault: the checks name each, and pass the rest."""
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/low.py": "def f():\n    from pkg.high import g  # lazy, still an import\n",
        "pkg/high.py": "from pkg import low\n",
        "pkg/sub/__init__.py": "from .a import x\n",
        "pkg/sub/a.py": "from . import b\nx = 1\n",
        "pkg/sub/b.py": "from pkg.sub.a import x\n",
        "pkg/stray.py": "import pkg.low\n",
    })
    floors = (("top", ("high", "sub", "pkg")), ("bottom", ("low",)))
    edges = imports(tmp_path, "pkg")
    assert {(e.importer, e.imported) for e in edges} == {
        ("pkg.low", "pkg.high"), ("pkg.high", "pkg.low"), ("pkg.sub", "pkg.sub.a"),
        ("pkg.sub.a", "pkg.sub.b"), ("pkg.sub.b", "pkg.sub.a"), ("pkg.stray", "pkg.low")}
    assert circles(edges) == [["pkg.high", "pkg.low"], ["pkg.sub.a", "pkg.sub.b"]]
    found = list(violations(edges, modules(tmp_path, "pkg"), floors, "pkg"))
    assert len(found) == 2
    assert "pkg.stray is in room 'stray', which is on no floor" in found[0]
    assert found[1].startswith("pkg/low.py:2: pkg.low (floor 'bottom') imports pkg.high")
    assert "a floor above" in found[1]


def test_an_import_sideways_on_one_floor_is_refused(tmp_path: Path) -> None:
    _write(tmp_path, {"pkg/__init__.py": "", "pkg/a.py": "import pkg.b\n", "pkg/b.py": ""})
    found = list(violations(imports(tmp_path, "pkg"), modules(tmp_path, "pkg"),
                            (("one", ("a", "b", "pkg")),), "pkg"))
    assert found == ["pkg/a.py:1: pkg.a (floor 'one') imports pkg.b, in room 'b' on its own "
                     "floor"]


@pytest.mark.parametrize(("line", "expected"), [
    ("1. **entry**: `b`, `a`", [("entry", ("a", "b"))]),
    ("  2. **x y**: `c` -- why `d` is here", [("x y", ("c",))]),
])
def test_readme_floor_lines_parse(line: str, expected: list) -> None:
    listed = readme_floors(f"# t\n## Architecture\n{line}\n## Next\n3. **no**: `z`\n")
    assert listed == expected


# --------------------------------------------------------------------------- long functions

LONG = 80
"""A function longer than this many lines (``def`` to its last line, decorators not counted)
needs a reason beside it: a comment block starting ``# Long`` (``# Long:`` or ``# Long by
design:``) in the few lines directly above its ``def`` or its decorators."""

REASON_WITHIN = 4
"""How many lines above the ``def`` (or its first decorator) the ``# Long`` comment may start."""

OWED_REASONS: dict[str, str] = {}
"""``path:function`` -> who owes its reason. Each entry must still be long and reasonless
(``test_owed_reasons_are_still_owed``), so the list empties as the owners catch up."""


@dataclass(frozen=True)
class LongFunction:
    """A function of ``length`` lines at ``path:line`` with no ``# Long`` reason above it."""

    path: str
    line: int
    name: str
    length: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.name} is {self.length} lines"


def long_functions(root: Path, folders: tuple[str, ...] = (PACKAGE, "benchmarks"),
                   limit: int = LONG) -> list[LongFunction]:
    """Every function (methods and nested ones too) in the .py files under ``root/folder``
    longer than ``limit`` lines with no ``# Long`` comment in the lines just above it."""
    found = []
    for folder in folders:
        for path in sorted((root / folder).rglob("*.py")):
            text = path.read_text()
            lines = text.splitlines()
            for node in ast.walk(ast.parse(text, filename=str(path))):
                if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    continue
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length <= limit:
                    continue
                top = min([d.lineno for d in node.decorator_list] + [node.lineno])
                above = lines[max(0, top - 1 - REASON_WITHIN):top - 1]
                if not any(line.lstrip().startswith("# Long") for line in above):
                    found.append(LongFunction(str(path.relative_to(root)), node.lineno,
                                              node.name, length))
    return found


def test_no_long_function_without_a_reason() -> None:
    found = [f for f in long_functions(ROOT) if f"{f.path}:{f.name}" not in OWED_REASONS]
    assert not found, (
        f"functions over {LONG} lines with no '# Long: why' comment above the def (split them, "
        "or say why the length is the clearest form):\n" + "\n".join(map(str, found)))


def test_owed_reasons_are_still_owed() -> None:
    owed = {f"{f.path}:{f.name}" for f in long_functions(ROOT)}
    paid = sorted(set(OWED_REASONS) - owed)
    assert not paid, f"no longer long without a reason; remove from OWED_REASONS: {paid}"


def test_the_long_function_check_counts_lines_and_finds_reasons(tmp_path: Path) -> None:
    """81 lines without a reason is found (also a method, decorators not counted); 80 lines,
    or 81 lines with a ``# Long`` comment above the decorators, passes."""
    body = "    x = 1\n"
    _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": (
            "def fits():\n" + body * 79                              # 80 lines: fine
            + "\n\n@staticmethod\ndef too_long():\n" + body * 80     # 81 lines: found
            + "\n\n# Long: a reason\n# on two lines\n@staticmethod\n@staticmethod\n"
            "def reasoned():\n" + body * 80                          # reason above decorators
            + "\n\n# Long: too far above\n\n\n\n\ndef far():\n" + body * 80
            + "\n\nclass C:\n    def method(self):\n" + ("    " + body) * 80),
    })
    found = long_functions(tmp_path, ("pkg",))
    assert [(f.name, f.length) for f in found] == [
        ("too_long", 81), ("far", 81), ("method", 81)]
    assert str(found[0]) == "pkg/a.py:84: too_long is 81 lines"
