"""The one way the plugin patches verl: when verl imports module M, wrap M.X once for a feature, or say why not.

The plugin is loaded by ``import verl`` in every verl process, Ray workers included. Importing verl's
trainer modules there just to patch them would cost seconds per worker and pull in code those
processes never use, so a patch waits for verl itself to import the module (:func:`when_imported`).

Every patch belongs to one *feature*, named as a run selects it:

- ``tempo``: ``algorithm.adv_estimator=tempo`` (the registry entry and the responses hook);
- ``tempo_tree``: ``actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree`` (the agent loop).

A patch that cannot be applied (the module lacks what it wraps, or the callback raises) never breaks
verl's import: it is logged and recorded for its feature only. A run that uses the feature stops at
start-up with one line naming the problems (:func:`check`); a run that does not is unaffected.
"""

from __future__ import annotations

import functools
import importlib.abc
import inspect
import logging
import sys
import threading
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

__all__ = [
    "FEATURES",
    "SUPPORTED_VERL",
    "check",
    "problem",
    "problems",
    "verl_version",
    "warn_untested_verl",
    "when_imported",
    "wrap",
]

logger = logging.getLogger(__name__)

#: verl releases the patches were written and tested against.
SUPPORTED_VERL = ("0.9.1",)
#: Each feature, and the run setting that selects it (what a refused run is told).
FEATURES = {
    "tempo": "algorithm.adv_estimator=tempo",
    "tempo_tree": "actor_rollout_ref.rollout.agent.default_agent_loop=tempo_tree",
}
#: Attribute of a wrapper: the features that wrapped it (a function is wrapped once per feature).
_MARK = "__tempo_verl_patched__"

#: feature -> why it cannot run in this process (empty or absent: it can). The one record of problems.
_problems: dict[str, list[str]] = {}
#: module name -> (feature, callback) to run once verl imports it.
_callbacks: dict[str, list[tuple[str, Callable[[ModuleType], None]]]] = {}
_lock = threading.RLock()


def verl_version() -> str:
    """The installed verl's version ("unknown" without a verl distribution)."""
    try:
        from importlib.metadata import version

        return version("verl")
    except Exception:  # pragma: no cover - no verl distribution
        return "unknown"


def problem(feature: str, where: str, what: str) -> None:
    """Record (once) and log why ``feature`` cannot run: ``where`` is the verl module or function concerned."""
    message = f"{where}: {what}"
    with _lock:
        found = _problems.setdefault(feature, [])
        if message in found:
            return
        found.append(message)
    logger.warning("tempo-verl: %s; a run with %s will stop at start-up.", message, FEATURES.get(feature, feature))


def problems(feature: str) -> list[str]:
    """Why ``feature`` cannot run in this process (empty when it can)."""
    return list(_problems.get(feature, ()))


def check(feature: str) -> None:
    """Stop a run that uses ``feature`` when one of its patches is missing.

    Raises:
        RuntimeError: one line naming the feature's setting, the verl version and every problem.
    """
    found = problems(feature)
    if found:
        raise RuntimeError(
            f"{FEATURES.get(feature, feature)} cannot run: tempo-verl could not patch verl {verl_version()} "
            f"({'; '.join(found)}). Supported: verl {', '.join(SUPPORTED_VERL)} (see docs/verl.md)."
        )


def _run(feature: str, callback: Callable[[ModuleType], None], module: ModuleType) -> None:
    """Run one callback; an error in it never breaks verl's own import of ``module``, it is a problem of ``feature``."""
    try:
        callback(module)
    except Exception as err:
        name = getattr(callback, "__qualname__", repr(callback))
        logger.error("tempo-verl: %s failed after importing %s", name, module.__name__, exc_info=True)
        problem(feature, module.__name__, f"{name} failed ({type(err).__name__}: {err})")


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
        for feature, callback in callbacks:
            _run(feature, callback, module)

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


def when_imported(feature: str, module_name: str, callback: Callable[[ModuleType], None]) -> None:
    """Call ``callback(module)`` once ``module_name`` is imported (at once if it already is), for ``feature``."""
    module = sys.modules.get(module_name)
    if module is not None:
        _run(feature, callback, module)
        return
    with _lock:
        _callbacks.setdefault(module_name, []).append((feature, callback))
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def _where(owner: Any, name: str) -> str:
    if isinstance(owner, ModuleType):
        return f"{owner.__name__}.{name}"
    return f"{getattr(owner, '__module__', '?')}.{getattr(owner, '__qualname__', type(owner).__name__)}.{name}"


def _has_params(fn: Any, names: Iterable[str]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return all(n in params for n in names)


def wrap(feature: str, owner: Any, name: str, make: Callable[[Callable], Callable], params: Iterable[str] = ()) -> bool:
    """Replace ``owner.name`` by ``make(original)`` once for ``feature``, or record why not.

    Args:
        feature: the feature the wrapper serves (its problem list gets any failure).
        owner: a verl module or class.
        name: the function or method to wrap.
        make: builds the wrapper from verl's original; the wrapper must call the original unchanged
            for any run that does not use ``feature``.
        params: parameter names the original must have (else it is not the function the wrapper was written for).

    Returns:
        Whether ``owner.name`` is now wrapped for ``feature``.
    """
    original = getattr(owner, name, None)
    if not callable(original) or not _has_params(original, params):
        signature = f"({', '.join(params)})" if params else ""
        problem(feature, _where(owner, name), f"{name}{signature} not found")
        return False
    marks = getattr(original, _MARK, ())
    if feature in marks:
        return True
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _MARK, (*marks, feature))
    setattr(owner, name, wrapper)
    return True


def warn_untested_verl() -> None:
    """Log once when the installed verl is not a tested release (the patches still check what they wrap)."""
    found = verl_version()
    if found not in ("unknown", *SUPPORTED_VERL):
        logger.warning(
            "tempo-verl: verl %s is not a tested release (tested: %s); the patches check what they wrap.",
            found,
            ", ".join(SUPPORTED_VERL),
        )
