"""The prompts ``tempo-verl inspect`` samples: a verl RL parquet file, or built-in arithmetic word problems.

Both give :class:`Prompt` rows with what the recipes' ``compute_score`` needs (``data_source``,
``ground_truth``, ``extra_info``). The built-in problems are generated from a seed (templates and
numbers of this module's own), have exact integer answers, use the recipes' math prompt template
(:func:`~tempo_verl.recipes.data.sources.math_prompt`) and are graded as ``gsm_hard`` (the number
stated last against the answer).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempo_verl.recipes.data.sources import math_prompt
from tempo_verl.recipes.rewards import reward_kind

__all__ = ["BUILTIN_SOURCE", "Prompt", "PromptError", "arithmetic_prompts", "parquet_prompts"]

#: How the built-in problems are graded (a number against an exact target).
BUILTIN_SOURCE = "gsm_hard"


class PromptError(ValueError):
    """The prompt file cannot be used; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class Prompt:
    """One prompt: the user message and how its responses are graded."""

    text: str
    data_source: str
    ground_truth: str
    extra_info: dict[str, Any] = field(default_factory=dict)


_NAMES = ("Ada", "Bruno", "Chidi", "Dana", "Emil", "Farah", "Goran", "Hana", "Ines", "Jonas", "Kemal", "Lena")
_ITEMS = ("marbles", "stickers", "pencils", "apples", "stamps", "shells", "cards", "buttons")


def _gets_more(r: random.Random) -> tuple[str, int]:
    name, item = r.choice(_NAMES), r.choice(_ITEMS)
    a, b = r.randint(3, 20), r.randint(2, 9)
    return f"{name} has {a} {item} and gets {b} more. How many {item} does {name} have now?", a + b


def _gives_away(r: random.Random) -> tuple[str, int]:
    name, item = r.choice(_NAMES), r.choice(_ITEMS)
    a = r.randint(8, 30)
    b = r.randint(2, a - 3)
    return f"{name} has {a} {item} and gives {b} of them away. How many {item} does {name} have left?", a - b


def _more_and_fewer(r: random.Random) -> tuple[str, int]:
    name, item = r.choice(_NAMES), r.choice(_ITEMS)
    a, b = r.randint(12, 60), r.randint(5, 40)
    c = r.randint(3, a + b - 1)
    text = f"{name} has {a} {item}. {name} gets {b} more, then gives {c} of them away. How many {item} are left?"
    return text, a + b - c


def _boxes(r: random.Random) -> tuple[str, int]:
    item = r.choice(_ITEMS)
    a, b, c = r.randint(3, 12), r.randint(4, 15), r.randint(1, 9)
    text = f"A box holds {a} {item}. There are {b} full boxes and {c} loose {item}. How many {item} are there?"
    return text, a * b + c


def _change(r: random.Random) -> tuple[str, int]:
    name, item = r.choice(_NAMES), r.choice(_ITEMS)
    price, count = r.randint(2, 9), r.randint(2, 8)
    paid = r.choice([x for x in (20, 50, 100) if x > price * count])
    text = (
        f"{item.capitalize()} cost {price} dollars each. {name} buys {count} of them and pays with a "
        f"{paid}-dollar bill. How many dollars of change does {name} get?"
    )
    return text, paid - price * count


def _share(r: random.Random) -> tuple[str, int]:
    item = r.choice(_ITEMS)
    each, kids, kept = r.randint(3, 14), r.randint(2, 9), r.randint(1, 9)
    text = (
        f"A teacher has {each * kids + kept} {item}. She keeps {kept} and shares the rest equally among "
        f"{kids} children. How many {item} does each child get?"
    )
    return text, each


def _reading(r: random.Random) -> tuple[str, int]:
    name = r.choice(_NAMES)
    per_day, days, extra = r.randint(6, 30), r.randint(3, 9), r.randint(5, 40)
    text = (
        f"{name} reads {per_day} pages a day for {days} days, then {extra} pages on the last evening. "
        f"How many pages does {name} read in all?"
    )
    return text, per_day * days + extra


def _twice(r: random.Random) -> tuple[str, int]:
    name = r.choice(_NAMES)
    a, b = r.randint(2, 25), r.randint(1, 9)
    text = (
        f"{name} walks {a} km on Monday, twice as far on Tuesday, and {b} km on Wednesday. "
        f"How many km does {name} walk in the three days?"
    )
    return text, 3 * a + b


#: One-step problems first (a 135M model solves some of them, so groups have mixed outcomes), then two-step ones.
_TEMPLATES: tuple[Callable[[random.Random], tuple[str, int]], ...] = (
    _gets_more,
    _gives_away,
    _more_and_fewer,
    _boxes,
    _change,
    _share,
    _reading,
    _twice,
)


def arithmetic_prompts(count: int, seed: int) -> list[Prompt]:
    """``count`` arithmetic word problems with exact integer answers, the same for the same ``seed``.

    The templates take turns (in a seeded order), so a handful of prompts already covers several kinds.
    """
    r = random.Random(f"tempo-verl inspect prompts/{seed}")
    order = list(_TEMPLATES)
    r.shuffle(order)
    prompts = []
    for i in range(count):
        text, answer = order[i % len(order)](r)
        prompts.append(
            Prompt(math_prompt(text), BUILTIN_SOURCE, str(answer), {"split": "builtin", "index": i, "options": []})
        )
    return prompts


def parquet_prompts(path: str | Path, count: int, seed: int) -> list[Prompt]:
    """``count`` rows of a verl RL parquet file (all when it has fewer), a seeded draw in file order.

    Raises:
        PromptError: the file cannot be read, lacks a column, or a row is not a single user message
            with a known ``data_source`` and a ground truth.
    """
    import pyarrow.parquet as pq

    path = Path(path).expanduser()
    try:
        rows = pq.read_table(path).to_pylist()
    except (OSError, ValueError) as err:
        raise PromptError(f"--data {path}: cannot read it as parquet ({err}).") from None
    need = ("prompt", "data_source", "reward_model")
    if not rows:
        raise PromptError(f"--data {path}: the file has no rows.")
    missing = [c for c in need if c not in rows[0]]
    if missing:
        raise PromptError(
            f"--data {path}: no column {missing[0]!r}; expected verl RL rows (prompt, data_source, "
            "reward_model.ground_truth, extra_info) as `tempo-verl data` writes them."
        )
    keep = sorted(random.Random(f"tempo-verl inspect data/{seed}").sample(range(len(rows)), min(count, len(rows))))
    return [_row_prompt(rows[i], f"--data {path}: row {i}") for i in keep]


def _row_prompt(row: dict[str, Any], where: str) -> Prompt:
    messages = row["prompt"]
    if not isinstance(messages, list) or len(messages) != 1 or not isinstance(messages[0], dict):
        raise PromptError(f"{where}: prompt must be one user message (inspect samples single-turn prompts).")
    message = messages[0]
    if message.get("role") != "user" or not str(message.get("content") or "").strip():
        raise PromptError(f"{where}: prompt must be one non-empty message with role 'user'.")
    try:
        reward_kind(row["data_source"])
    except ValueError as err:
        raise PromptError(f"{where}: {err}") from None
    truth = (row.get("reward_model") or {}).get("ground_truth")
    if truth is None or not str(truth).strip():
        raise PromptError(f"{where}: reward_model.ground_truth is empty; every row needs the answer to grade it.")
    extra = row.get("extra_info") if isinstance(row.get("extra_info"), dict) else {}
    return Prompt(str(message["content"]), str(row["data_source"]), str(truth), dict(extra))
