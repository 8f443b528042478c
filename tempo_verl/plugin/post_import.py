"""Run a callback right after a module is imported (or at once if it already is).

The plugin is loaded by ``import verl`` in every verl process, Ray workers included. Importing
verl's trainer modules there just to patch them would cost seconds per worker and pull in code
those processes never use, so the plugin waits for the modules to be imported by verl itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import threading
from collections.abc import Callable
from types import ModuleType

from tempo_verl.plugin.state import hook_problems

__all__ = ["when_imported"]

logger = logging.getLogger(__name__)

_callbacks: dict[str, list[Callable[[ModuleType], None]]] = {}
_lock = threading.RLock()


class _Loader(importlib.abc.Loader):
    """Wraps a module's real loader and runs the callbacks once the module has executed."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self._inner.exec_module(module)
        with _lock:
            callbacks = _callbacks.pop(module.__name__, [])
        for callback in callbacks:
            _run(callback, module)

    def __getattr__(self, name: str):  # get_source, get_code, ... for tools that ask the loader
        return getattr(self._inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in _callbacks:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _Loader(spec.loader)
                return spec
        return None


_finder = _Finder()


def _run(callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    """Run one callback; an error in it must never break verl's own import of ``module``.

    The failure is logged at ERROR (verl's plugin loader would only say it at DEBUG) and recorded in
    :data:`tempo_verl.plugin.state.hook_problems`, so a ``tempo`` run stops at start-up naming it.
    """
    try:
        callback(module)
    except Exception as err:
        name = getattr(callback, "__qualname__", repr(callback))
        logger.error("tempo-verl: %s failed after importing %s", name, module.__name__, exc_info=True)
        hook_problems.append(f"{name} on {module.__name__} failed ({type(err).__name__}: {err})")


def when_imported(module_name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once ``module_name`` is imported; at once if it already is."""
    module = sys.modules.get(module_name)
    if module is not None:
        _run(callback, module)
        return
    with _lock:
        _callbacks.setdefault(module_name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)
