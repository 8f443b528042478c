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
    "is_tempo",
    "response_attention",
    "token_inputs",
]

ESTIMATOR_NAME = "tempo"


def is_tempo(estimator: object) -> bool:
    """Whether verl's ``adv_estimator`` value (a string or verl's enum) names ``tempo``."""
    return estimator == ESTIMATOR_NAME or getattr(estimator, "value", None) == ESTIMATOR_NAME


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
