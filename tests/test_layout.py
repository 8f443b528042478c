"""The package's architecture, checked: rooms import one way, the core is pure torch, no import circle.

Every ``import`` of every module is read with ``ast`` (also those inside functions), so a lazy import
cannot hide a dependency that goes the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "tempo_verl"

#: The rooms each room may import from (besides itself). Anything not listed is a layout error.
ALLOWED = {
    "core": set(),
    "outputs": set(),
    "knobs": set(),
    "recipes": {"outputs"},
    "trees": {"core", "outputs"},
    "plugin": {"core", "knobs", "trees", "rollout"},
    "rollout": {"core", "knobs"},
    "demo": {"__init__", "core", "plugin", "trees", "rollout", "recipes", "outputs"},
    "inspect": {"__init__", "core", "plugin", "trees", "rollout", "recipes", "demo", "outputs"},
    "cli": {"__init__", "core", "plugin", "trees", "rollout", "recipes", "demo", "inspect", "outputs"},
    "__init__": {"core", "plugin"},
}
#: Third-party roots a pure-torch room must not import.
NOT_IN_CORE = {"verl", "omegaconf", "hydra", "transformers", "ray", "transfer_queue", "tempo_verl.plugin"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, package: str, is_module=lambda name: False) -> set[str]:
    """Absolute names of everything ``path`` imports (relative imports resolved against ``package``).

    ``from pkg import sub`` names ``pkg.sub`` only where ``is_module("pkg.sub")`` (a submodule), else
    ``pkg`` and ``pkg.name`` both.
    """
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = {f"{base}.{alias.name}" for alias in node.names}
            found.update(names)
            if not all(is_module(name) for name in names):
                found.add(base)
    return found


def _room(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _module_imports(module: str) -> set[str]:
    path = MODULES[module]
    return _imports(path, module if path.name == "__init__.py" else module.rpartition(".")[0], MODULES.__contains__)


def _internal(module: str) -> set[str]:
    """The package modules ``module`` imports (``from pkg import name`` counts as importing ``pkg`` unless
    ``name`` is a submodule)."""
    return {name for name in _module_imports(module) if name in MODULES and name != module}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_rooms_import_one_way(module):
    room = _room(module)
    assert room in ALLOWED, f"{module}: room {room!r} is not in the layout (add it to ALLOWED and the README)"
    bad = {name for name in _internal(module) if _room(name) not in ALLOWED[room] | {room}}
    assert not bad, f"{module} ({room}) imports {sorted(bad)}; {room} may import {sorted(ALLOWED[room])}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _room(m) == "core"))
def test_core_is_pure_torch(module):
    bad = {n for n in _module_imports(module) if any(n == x or n.startswith(x + ".") for x in NOT_IN_CORE)}
    assert not bad, f"{module} imports {sorted(bad)}: the core imports torch, numpy and the standard library only"


def _find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``graph`` (module -> modules it imports), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return [*stack[stack.index(n) :], n]
            if n not in state and (circle := visit(n)):
                return circle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (circle := visit(m)):
            return circle
    return None


def test_no_import_circle():
    circle = _find_circle({m: _internal(m) for m in MODULES})
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_checks_see_a_circle_and_a_wrong_way_import(tmp_path):
    assert _find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_circle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from verl import DataProto\n    import tempo_verl.plugin.state\n")
    assert {"verl", "tempo_verl.plugin.state"} <= _imports(fake, "tempo_verl.core")
