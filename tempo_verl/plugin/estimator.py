"""The ``tempo`` entry of verl's advantage-estimator registry: verl's call, TEMPO's answer.

verl 0.9.1 calls registered estimators with ``token_level_rewards``, ``response_mask``, ``index``
and ``config`` only; like verl's ``grpo`` the entry also takes ``epsilon`` and
``norm_adv_by_std_in_grpo`` as keywords and refuses any other name with ``TypeError``. TEMPO also
needs the response token ids and valid lengths. They arrive either
as keyword arguments (``responses`` / ``batch``, as a verl that passes the batch to estimators would
do) or through :func:`tempo_verl.plugin.state.token_inputs`, which the hook opens around verl's own
advantage step. The tree metrics of the call are handed back the same way.
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import torch

from tempo_verl.core.advantage import tempo_advantage_and_forest
from tempo_verl.core.metrics import tree_metrics
from tempo_verl.plugin import patch
from tempo_verl.plugin.config import DumpConfig, read_algorithm_config
from tempo_verl.plugin.state import ESTIMATOR_NAME, current_inputs, response_attention

__all__ = ["tempo_estimator"]

_calls = itertools.count(1)  # step numbers for dumps when the trainer does not say
_dump_writers: dict[DumpConfig, Any] = {}


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


def _from_batch(
    responses: torch.Tensor | None,
    response_attention_mask: torch.Tensor | None,
    batch: Any,
    length: int,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``responses`` and the response attention mask, from verl's ``batch`` where not given directly."""
    if batch is None:
        return responses, response_attention_mask
    # TensorDict refuses `key in td`: it wants `key in td.keys()`.
    if responses is None and "responses" in batch.keys():  # noqa: SIM118
        responses = batch["responses"]
    if response_attention_mask is None and "attention_mask" in batch.keys():  # noqa: SIM118
        response_attention_mask = response_attention(batch["attention_mask"], length)
    return responses, response_attention_mask


def tempo_estimator(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool | None = None,
    config: Any = None,
    *,
    td_coef: float | None = None,
    responses: torch.Tensor | None = None,
    response_attention_mask: torch.Tensor | None = None,
    response_lengths: torch.Tensor | None = None,
    batch: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``tempo`` entry of verl's advantage-estimator registry (the parameters of verl's ``grpo``, and TEMPO's).

    Args:
        token_level_rewards, response_mask, index: as verl passes them to every estimator (see
            :func:`tempo_verl.compute_tempo_advantage` for shapes).
        epsilon: added to the group std, as in ``grpo``.
        norm_adv_by_std_in_grpo, td_coef: when given, they win over the config's
            ``norm_adv_by_std_in_grpo`` and ``algorithm.tempo.td_coef``.
        config: verl's ``algorithm`` config (DictConfig or ``AlgoConfig``): ``norm_adv_by_std_in_grpo``
            and ``algorithm.tempo.*`` are read from it, once per call.
        responses, response_attention_mask, response_lengths, batch: the token ids and valid lengths,
            passed directly or in verl's ``batch`` (a verl that passes the batch to estimators); else the
            responses hook supplies them.

    Returns:
        ``(advantages, returns)``, ``(bs, L)`` float32.
    """
    start = time.perf_counter()
    tempo_config, norm = read_algorithm_config(config)
    if norm_adv_by_std_in_grpo is not None:
        norm = bool(norm_adv_by_std_in_grpo)
    width = token_level_rewards.shape[-1] if isinstance(token_level_rewards, torch.Tensor) else 0
    responses, response_attention_mask = _from_batch(responses, response_attention_mask, batch, width)
    inputs = current_inputs()
    if responses is None and inputs is not None:
        device = token_level_rewards.device
        responses = _fit_width(inputs.responses, width).to(device)
        if inputs.lengths is not None:
            response_lengths = inputs.lengths.to(device)
        elif inputs.attention is not None:
            response_attention_mask = _fit_width(inputs.attention, width, padding_only=True).to(device)
    elif responses is None:
        patch.check(ESTIMATOR_NAME)  # a missing hook says so; else the core names what is missing

    advantages, returns, forest = tempo_advantage_and_forest(
        token_level_rewards,
        response_mask,
        index,
        responses,
        response_attention_mask=response_attention_mask,
        response_lengths=response_lengths,
        epsilon=epsilon,
        norm_adv_by_std_in_grpo=True if norm is None else norm,
        td_coef=tempo_config.td_coef if td_coef is None else td_coef,
    )
    call = next(_calls)
    if inputs is not None:
        inputs.metrics = tree_metrics(forest, response_mask)
        inputs.metrics["tempo/time_s"] = time.perf_counter() - start
    if tempo_config.dump.enabled:
        step = inputs.step if inputs is not None and inputs.step is not None else call
        _dump_writer(tempo_config.dump).maybe_dump(step, forest, responses, response_mask, index)
    return advantages, returns


def _dump_writer(dump: DumpConfig):
    """One background writer per dump configuration (see :mod:`tempo_verl.trees.writer`)."""
    if dump not in _dump_writers:
        from tempo_verl.trees.writer import TreeDumpWriter

        _dump_writers[dump] = TreeDumpWriter(dump.dir, every=dump.every, groups=dump.groups)
    return _dump_writers[dump]
