"""`plans` stays pure: standard library and msgspec only, no clock, no I/O but the catalog."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import plans

PLANS_DIR = Path(plans.__file__).parent
MODULES = sorted(PLANS_DIR.glob("*.py"))
ALLOWED_THIRD_PARTY = {"msgspec"}
FORBIDDEN = {"service", "webhooks", "litestar", "piccolo", "stripe", "asyncpg", "structlog"}
# impure corners of the standard library: clocks, randomness, processes, network, environment
IMPURE_STDLIB = {
    "time", "random", "secrets", "uuid", "os", "subprocess", "socket", "http", "urllib",
    "asyncio", "threading", "sqlite3", "shutil", "tempfile",
}  # fmt: skip
CLOCK_CALLS = {"now", "utcnow", "today", "fromtimestamp", "utcfromtimestamp"}
IO_NAMES = {"open", "read_text", "read_bytes", "write_text", "write_bytes", "environ", "getenv"}
# the loader may read the shipped catalog file; nothing else may touch files or the environment
IO_ALLOWED_IN = {"catalog.py": {"read_text"}}


def imported_roots(tree: ast.AST) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: stays inside plans
                continue
            roots.add((node.module or "").split(".")[0])
    return roots


def test_there_are_modules_to_check() -> None:
    assert {"money.py", "catalog.py", "rating.py", "charges.py"} <= {m.name for m in MODULES}


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_imports_only_the_standard_library_and_msgspec(module: Path) -> None:
    roots = imported_roots(ast.parse(module.read_text(encoding="utf-8")))
    assert not roots & FORBIDDEN, f"{module.name} imports {sorted(roots & FORBIDDEN)}"
    assert not roots & IMPURE_STDLIB, f"{module.name} imports {sorted(roots & IMPURE_STDLIB)}"
    outside = {
        root
        for root in roots
        if root not in sys.stdlib_module_names
        and root not in ALLOWED_THIRD_PARTY
        and root not in {"plans", "__future__"}
    }
    assert not outside, f"{module.name} imports {sorted(outside)} (stdlib + msgspec only)"


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_never_reads_the_clock_or_does_io(module: Path) -> None:
    tree = ast.parse(module.read_text(encoding="utf-8"))
    allowed_io = IO_ALLOWED_IN.get(module.name, set())
    for node in ast.walk(tree):
        called = node.func if isinstance(node, ast.Call) else None
        if isinstance(called, ast.Attribute) and called.attr in CLOCK_CALLS:
            pytest.fail(f"{module.name}:{node.lineno} reads the clock ({called.attr})")
        name = None
        if isinstance(node, ast.Attribute):
            name = node.attr
        elif isinstance(node, ast.Name):
            name = node.id
        if name in IO_NAMES and name not in allowed_io:
            pytest.fail(f"{module.name}:{node.lineno} does I/O ({name})")


def test_the_checker_catches_forbidden_imports() -> None:
    tree = ast.parse(
        "import stripe\nfrom service.db import x\nfrom . import money\nimport os.path\n"
    )
    assert imported_roots(tree) == {"stripe", "service", "os"}
