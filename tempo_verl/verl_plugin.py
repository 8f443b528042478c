"""verl glue: ``algorithm.adv_estimator=tempo``.

Loaded by ``import verl`` in every verl process through the ``verl.plugins`` entry point (and by
``import tempo_verl``). It registers the ``tempo`` estimator in verl's registry as soon as
``verl.trainer.ppo.core_algos`` is imported, and installs the responses hook
(:mod:`tempo_verl.verl_hook`). Nothing here changes what verl does for any other estimator.

verl 0.9.1 calls registered estimators with ``token_level_rewards``, ``response_mask``,
``index`` and ``config`` only: TEMPO also needs the response token ids and valid lengths. They
arrive either as keyword arguments (``responses`` / ``batch``, as a verl that passes the batch to
estimators would do) or through :func:`token_inputs`, which the hook opens around verl's own
advantage step. The tree metrics of the last call are handed back the same way.
"""

from __future__ import annotations

import contextlib
import contextvars
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from tempo_verl._post_import import when_imported
from tempo_verl.advantage import resolve_token_inputs, tempo_advantage_and_forest
from tempo_verl.config import DumpConfig, read_algorithm_config
from tempo_verl.metrics import tree_metrics

__all__ = ["ESTIMATOR_NAME", "TokenInputs", "install", "tempo_estimator", "token_inputs"]

logger = logging.getLogger(__name__)

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

_calls = itertools.count(1)  # step numbers for dumps when the trainer does not say
_dump_writers: dict[DumpConfig, Any] = {}

#: Why the responses hook is not installed (empty when it is). Filled by :mod:`tempo_verl.verl_hook`.
hook_problems: list[str] = []


@contextlib.contextmanager
def token_inputs(inputs: TokenInputs) -> Iterator[TokenInputs]:
    """Make ``inputs`` visible to the ``tempo`` estimator for the duration of the block."""
    token = _current.set(inputs)
    try:
        yield inputs
    finally:
        _current.reset(token)


def _fit_width(t: torch.Tensor, width: int, padding_only: bool = False) -> torch.Tensor:
    """Right-pad or trim ``(bs, w)`` to the reward width ``(bs, width)``.

    verl pads the fields of one batch alike, so this is a no-op there; ``padding_only`` refuses to trim
    anything but zeros (a mask wider than the rewards that still marks tokens is an error, not a trim).
    """
    if t.shape[1] > width and padding_only and bool(t[:, width:].any()):
        raise ValueError(
            f"response attention mask: it marks valid positions beyond the reward width {width} (it has "
            f"{t.shape[1]}); responses and token_level_rewards must be padded to the same response length."
        )
    if t.shape[1] >= width:
        return t[:, :width]
    return torch.nn.functional.pad(t, (0, width - t.shape[1]))


def tempo_estimator(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``tempo`` entry of verl's advantage-estimator registry.

    Same contract as :func:`tempo_verl.compute_tempo_advantage`; token ids come from ``kwargs``
    (``responses``, ``response_attention_mask``, ``batch``) or from the responses hook.
    """
    start = time.perf_counter()
    inputs = _current.get()
    if inputs is not None and kwargs.get("responses") is None and kwargs.get("batch") is None:
        width = token_level_rewards.shape[1]
        device = token_level_rewards.device
        kwargs["responses"] = _fit_width(inputs.responses, width).to(device)
        if inputs.lengths is not None:
            kwargs["response_lengths"] = inputs.lengths.to(device)
        elif inputs.attention is not None:
            kwargs["response_attention_mask"] = _fit_width(inputs.attention, width, padding_only=True).to(device)
    elif kwargs.get("responses") is None and kwargs.get("batch") is None and hook_problems:
        raise RuntimeError(_hook_error())

    advantages, returns, forest = tempo_advantage_and_forest(
        token_level_rewards, response_mask, index=index, config=config, **kwargs
    )
    call = next(_calls)
    if inputs is not None:
        inputs.metrics = tree_metrics(forest, response_mask)
        inputs.metrics["tempo/time_s"] = time.perf_counter() - start
    if config is not None:
        dump = read_algorithm_config(config)[0].dump
        if dump.enabled:
            step = inputs.step if inputs is not None and inputs.step is not None else call
            responses = resolve_token_inputs(
                kwargs.get("responses"), None, kwargs.get("batch"), response_mask.shape[1]
            )[0]
            _dump_writer(dump).maybe_dump(step, forest, responses, response_mask, index)
    return advantages, returns


def _dump_writer(dump: DumpConfig):
    """One background writer per dump configuration (see :mod:`tempo_verl.tree_dump`)."""
    if dump not in _dump_writers:
        from tempo_verl.tree_dump import TreeDumpWriter

        _dump_writers[dump] = TreeDumpWriter(dump.dir, every=dump.every, groups=dump.groups)
    return _dump_writers[dump]


def _verl_version() -> str:
    try:
        import verl

        return str(verl.__version__)
    except Exception:  # pragma: no cover - verl import failure is reported by verl itself
        return "unknown"


def _hook_error() -> str:
    return (
        f"algorithm.adv_estimator=tempo needs the response token ids, and the tempo-verl hook that passes "
        f"them could not be installed on verl {_verl_version()}: {'; '.join(hook_problems)}. "
        "Supported: verl 0.9.1 (see docs/verl.md); install a supported verl, or call the estimator with "
        "responses=... yourself."
    )


def check_run_config(config: Any) -> None:
    """Start-up check of a verl run config that uses ``tempo``: knobs and hook, before any worker starts.

    Raises:
        ValueError: a bad ``algorithm.tempo`` knob (named, with the valid keys).
        RuntimeError: the responses hook is missing for this verl (names the version and what is missing).
    """
    algorithm = config.get("algorithm") if hasattr(config, "get") else getattr(config, "algorithm", None)
    if algorithm is None or str(algorithm.get("adv_estimator")) != ESTIMATOR_NAME:
        return
    read_algorithm_config(algorithm)
    if hook_problems:
        raise RuntimeError(_hook_error())


def _register(core_algos) -> None:
    try:
        core_algos.register_adv_est(ESTIMATOR_NAME)(tempo_estimator)
    except ValueError as err:
        logger.warning("tempo-verl: could not register adv_estimator '%s': %s", ESTIMATOR_NAME, err)


def install() -> None:
    """Register ``tempo`` (when verl's registry is imported) and install the responses hook. Idempotent."""
    from tempo_verl import verl_hook

    when_imported("verl.trainer.ppo.core_algos", _register)
    verl_hook.install()


install()
