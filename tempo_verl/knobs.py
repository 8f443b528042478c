"""Reading knobs from verl config nodes (no verl import): key checks and typed values.

A node is whatever verl hands over: an OmegaConf ``DictConfig``, a plain dict, a dataclass, or None.
Every error names the knob's full path, what was expected and, for unknown keys, the valid ones.
Used by ``algorithm.tempo`` (:mod:`tempo_verl.plugin.config`) and ``actor_rollout_ref.rollout.custom.tree``
(:mod:`tempo_verl.rollout.config`).
"""

from __future__ import annotations

import math
from dataclasses import fields
from typing import Any

__all__ = ["check_keys", "get", "keys", "number"]


def get(node: Any, key: str, default: Any = None) -> Any:
    """``node[key]`` of a mapping, ``node.key`` of an object, ``default`` if absent or ``node`` is None."""
    if node is None:
        return default
    if hasattr(node, "get"):
        return node.get(key, default)
    return getattr(node, key, default)


def keys(path: str, node: Any) -> list[str]:
    """The keys of the mapping at ``path`` (none for None).

    Raises:
        ValueError: ``node`` is not a mapping.
    """
    if node is None:
        return []
    if hasattr(node, "keys"):
        return [str(k) for k in node]
    raise ValueError(f"{path}: expected a mapping of knobs, got {type(node).__name__} {node!r}.")


def check_keys(path: str, node: Any, cls: type) -> None:
    """Raise ``ValueError`` naming the keys of ``node`` that are not fields of the dataclass ``cls``."""
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(keys(path, node)) - set(valid))
    if unknown:
        raise ValueError(
            f"{path}: unknown key(s) {unknown}; valid keys are {valid} "
            f"(on verl's command line: +{path}.{valid[0]}=...)."
        )


def number(path: str, value: Any, kind: type, minimum: float | None = None) -> Any:
    """``value`` as a finite ``kind`` (int or float), at least ``minimum``.

    Raises:
        ValueError: naming ``path``, the value and what was expected (booleans and strings are not numbers).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{path}: expected a {kind.__name__}, got {value!r}.")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: expected a finite number, got {value!r}.")
    if kind is int and value != int(value):
        raise ValueError(f"{path}: expected an integer, got {value!r}.")
    value = kind(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{path}: expected a value >= {minimum}, got {value!r}.")
    return value
