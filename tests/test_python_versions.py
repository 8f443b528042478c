"""Python versions: the suite runs on a declared one, and the 3.10 TimeoutError difference is never relied on."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted([*(ROOT / "tempo_verl").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")])

# On Python 3.10, asyncio.wait_for / asyncio.timeout raise asyncio.TimeoutError and a future's result(timeout)
# raises concurrent.futures.TimeoutError: classes distinct from the builtin TimeoutError (they are aliases of
# it from 3.11 on). A handler of the builtin alone then misses them.
_OWN_TIMEOUTS = {"asyncio": "asyncio.TimeoutError", "concurrent.futures": "futures.TimeoutError"}


def _timeout_names(node: ast.AST | None) -> set[str]:
    """The dotted names ending in ``TimeoutError`` that an ``except`` type or ``suppress(...)`` names."""
    if node is None:
        return set()
    names = (ast.unparse(n) for n in ast.walk(node) if isinstance(n, ast.Name | ast.Attribute))
    return {name for name in names if name.endswith("TimeoutError")}


def timeout_handlers_missing_the_310_class(source: str) -> list[str]:
    """``line: what`` for each handler of the builtin TimeoutError in a module using asyncio or concurrent.futures
    that does not also name that library's own TimeoutError."""
    tree = ast.parse(source)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {f"{n.module}.{a.name}" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    needed = [own for lib, own in _OWN_TIMEOUTS.items() if lib in imported]
    problems = []
    for node in ast.walk(tree):
        caught: set[str] | None = None
        if isinstance(node, ast.ExceptHandler):
            caught = _timeout_names(node.type)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("suppress"):
            caught = set().union(*(_timeout_names(arg) for arg in node.args))
        if caught and "TimeoutError" in caught:
            for own in needed:
                if not any(name.endswith(own) for name in caught):
                    problems.append(f"line {node.lineno}: catches TimeoutError but not {own} (distinct on 3.10)")
    return problems


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_timeouts_are_caught_as_python_3_10_raises_them(path):
    assert timeout_handlers_missing_the_310_class(path.read_text(encoding="utf-8")) == []


def test_the_check_sees_the_3_10_timeout_bug():
    """The check itself: the pattern that broke the tree loop on 3.10, and its fixes."""
    bug = "import asyncio, contextlib\nasync def f(t):\n    with contextlib.suppress(TimeoutError):\n        await t\n"
    assert timeout_handlers_missing_the_310_class(bug) == [
        "line 3: catches TimeoutError but not asyncio.TimeoutError (distinct on 3.10)"
    ]
    handler = "import asyncio\ntry:\n    pass\nexcept (ValueError, TimeoutError):\n    pass\n"
    assert len(timeout_handlers_missing_the_310_class(handler)) == 1
    futures = "from concurrent import futures\ntry:\n    pass\nexcept TimeoutError:\n    pass\n"
    assert len(timeout_handlers_missing_the_310_class(futures)) == 1
    for fixed in (
        bug.replace("suppress(TimeoutError)", "suppress(TimeoutError, asyncio.TimeoutError)"),
        bug.replace("suppress(TimeoutError)", "suppress(asyncio.TimeoutError)"),
        handler.replace("(ValueError, TimeoutError)", "(ValueError, TimeoutError, asyncio.TimeoutError)"),
        "import socket\ntry:\n    pass\nexcept TimeoutError:\n    pass\n",  # no asyncio: the builtin is right
    ):
        assert timeout_handlers_missing_the_310_class(fixed) == []


def test_the_suite_runs_on_a_declared_python_and_ci_finds_it():
    """setup.py admits this interpreter; .ci/declared_pythons.py (CI's matrix) lists this version."""
    spec = re.search(r'python_requires="([^"]+)"', (ROOT / "setup.py").read_text())[1]
    sys.path.insert(0, str(ROOT / ".ci"))
    try:
        from declared_pythons import admitted
    finally:
        sys.path.remove(str(ROOT / ".ci"))
    assert admitted(spec, sys.version_info[:2]), f"Python {sys.version_info[:2]} is not in {spec}"
    assert admitted(">=3.11,<3.12", (3, 11)) and not admitted(">=3.11,<3.12", (3, 12))
    listed = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "declared_pythons.py")], capture_output=True, text=True, check=True
    ).stdout.split()
    versions = {
        subprocess.run([p, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True).stdout
        for p in listed
    }
    assert f"{tuple(sys.version_info[:2])}\n" in versions
