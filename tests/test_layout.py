"""The layout shows the architecture: the pure rooms (ABI facts, rules, cases and tables,
surfaces, the report model and its formats) import no I/O, so they can be read, tested
and reused without a kernel, a process or a terminal (kunit_tool keeps its parser pure
the same way). Imports anywhere in a module count, not only those at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.paths import ROOT

PURE = ("abi", "rules", "cases", "surfaces", "report")
PURE_MODULES = ("errors.py", "paths.py")
IO_PACKAGES = ("harness.host", "harness.session", "harness.model", "harness.qemu", "harness.cli")
FORBIDDEN = ("ctypes", "pytest", "_pytest", "subprocess", "hypothesis", *IO_PACKAGES)


def pure_files() -> list[Path]:
    harness = ROOT / "harness"
    files = [f for room in PURE for f in sorted((harness / room).rglob("*.py"))]
    return files + [harness / m for m in PURE_MODULES]


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def forbidden(name: str) -> bool:
    return any(name == f or name.startswith(f + ".") for f in FORBIDDEN)


@pytest.mark.parametrize("path", pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_module_imports_no_io(path: Path) -> None:
    bad = [f"line {n}: {name}" for n, name in imports(path) if forbidden(name)]
    assert not bad, f"{path.relative_to(ROOT)} is in a pure room but imports I/O: {bad}"


def test_every_module_is_in_a_room() -> None:
    """harness/ holds rooms (packages) and a few pure modules, not a flat pile."""
    loose = sorted(p.name for p in (ROOT / "harness").glob("*.py") if p.name not in (*PURE_MODULES, "__init__.py"))
    assert not loose, f"modules outside a room: {loose}"
