"""What the responses hook and the ``tempo`` estimator share for one advantage step (no verl import).

verl 0.9.1 calls a registered estimator with ``token_level_rewards``, ``response_mask``, ``index``
and ``config`` only, and takes back ``(advantages, returns)``. The hook (:mod:`tempo_verl.plugin.hook`)
opens :func:`token_inputs` around verl's own advantage step to hand the estimator the response token
ids; the estimator leaves the step's ``tempo/*`` metrics on the same object, because verl's call chain
has no other way back to the trainer's metrics dict.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

__all__ = [
    "ESTIMATOR_NAME",
    "TokenInputs",
    "current_inputs",
    "hook_error",
    "hook_problems",
    "response_attention",
    "token_inputs",
]

ESTIMATOR_NAME = "tempo"


@dataclass
class TokenInputs:
    """What the hook hands the estimator for one advantage step, and what it gets back.

    Attributes:
        responses: ``(bs, W)`` response token ids in the rows' order (right-padded).
        lengths: ``(bs,)`` valid lengths, or None to take them from ``attention``.
        attention: ``(bs, W)`` response attention mask, or None.
        step: the training step (for tree dumps), if known.
        metrics: filled by the estimator: the ``tempo/*`` metrics of the call.
    """

    responses: torch.Tensor
    lengths: torch.Tensor | None = None
    attention: torch.Tensor | None = None
    step: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)


_current: contextvars.ContextVar[TokenInputs | None] = contextvars.ContextVar("tempo_token_inputs", default=None)

#: Why the responses hook is not installed (empty when it is). Filled by :mod:`tempo_verl.plugin.hook`.
hook_problems: list[str] = []


def current_inputs() -> TokenInputs | None:
    """The inputs of the advantage step in progress, or None outside the hook."""
    return _current.get()


@contextlib.contextmanager
def token_inputs(inputs: TokenInputs) -> Iterator[TokenInputs]:
    """Make ``inputs`` visible to the ``tempo`` estimator for the duration of the block."""
    token = _current.set(inputs)
    try:
        yield inputs
    finally:
        _current.reset(token)


def response_attention(attention_mask: torch.Tensor, width: int) -> torch.Tensor:
    """The response part of verl's ``(bs, prompt + response)`` attention mask: its last ``width`` columns."""
    return attention_mask[:, attention_mask.shape[1] - width :]


def _verl_version() -> str:
    try:
        from importlib.metadata import version

        return version("verl")
    except Exception:  # pragma: no cover - no verl distribution
        return "unknown"


def hook_error() -> str:
    """The message a tempo run stops with when the hook could not be installed."""
    return (
        f"algorithm.adv_estimator=tempo needs the response token ids, and the tempo-verl hook that passes "
        f"them could not be installed on verl {_verl_version()}: {'; '.join(hook_problems)}. "
        "Supported: verl 0.9.1 (see docs/verl.md); install a supported verl, or call the estimator with "
        "responses=... yourself."
    )
