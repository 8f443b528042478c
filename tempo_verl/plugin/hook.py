"""The responses hook: hands TEMPO the response token ids inside verl 0.9.1's trainers.

verl 0.9.1 calls advantage estimators without the response token ids. This module is the one
place that works around it, and only while ``algorithm.adv_estimator`` is ``tempo``:

- v1 trainer (default, TransferQueue): ``PPOTrainer._compute_advantage`` reads a fixed list of
  fields that lacks ``responses``; the wrapper reads ``responses`` from TransferQueue too (one
  extra read, timed as ``tempo/hook_fetch_time_s``), derives each sample's valid length from the
  nested layout, runs verl's own method inside :func:`tempo_verl.plugin.state.token_inputs`, and
  adds the ``tempo/*`` metrics to the step's metrics.
- legacy trainer (``trainer.use_v1=False``): ``ray_trainer.compute_advantage`` receives the whole
  ``DataProto``; the wrapper passes its ``responses`` and ``attention_mask`` on, and the metrics
  reach the step through ``compute_data_metrics``.
- start-up: verl's ``validate_config`` also checks a ``tempo`` run (knobs, hook), and a run that
  selects the ``tempo_tree`` agent loop (:func:`tempo_verl.rollout.config.check_tree_run`), before
  any worker starts.

Every wrapper calls verl's original unchanged for any other estimator. When a verl release
passes the batch to estimators (upstream PR #7473), delete this module and its ``install()``
call in :mod:`tempo_verl.plugin`.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from tempo_verl.plugin.config import check_run_config
from tempo_verl.plugin.post_import import when_imported
from tempo_verl.plugin.state import (
    ESTIMATOR_NAME,
    TokenInputs,
    current_inputs,
    hook_problems,
    response_attention,
    token_inputs,
)
from tempo_verl.rollout.config import check_tree_run, selects_tree

__all__ = ["SUPPORTED_VERL", "install"]

logger = logging.getLogger(__name__)

#: verl releases the hook was written and tested against.
SUPPORTED_VERL = ("0.9.1",)

_MARK = "__tempo_verl_hook__"
_V1 = "verl.trainer.ppo.v1.trainer_base"
_LEGACY = "verl.trainer.ppo.ray_trainer"
#: The last legacy tempo step: (a weak reference to its DataProto, its metrics), until compute_data_metrics
#: sees that very batch. The legacy trainer keeps its metrics dict local to ``fit()``, and verl's registry
#: returns only (advantages, returns), so this is the one way the step's tree metrics reach its log; the
#: weak reference (not an id) cannot match a later batch that reuses a freed one's address.
_pending_legacy_metrics: list[tuple[weakref.ref, dict[str, float]]] = []


def _is_tempo(estimator: Any) -> bool:
    return estimator == ESTIMATOR_NAME or getattr(estimator, "value", None) == ESTIMATOR_NAME


def _problem(where: str, what: str) -> None:
    message = f"{where}: {what}"
    if message not in hook_problems:
        hook_problems.append(message)
    logger.warning(
        "tempo-verl: cannot install the responses hook (%s); adv_estimator=tempo will refuse to run.", message
    )


def _wrap(owner: Any, name: str, make: Callable[[Callable], Callable]) -> None:
    original = getattr(owner, name)
    if getattr(original, _MARK, False):
        return
    wrapper = functools.wraps(original)(make(original))
    setattr(wrapper, _MARK, True)
    setattr(owner, name, wrapper)


def _has_params(fn: Any, names: list[str]) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return all(n in params for n in names)


# --- v1 trainer ---------------------------------------------------------------------------------


def _patch_v1(module: ModuleType) -> None:
    trainer = getattr(module, "PPOTrainer", None)
    method = getattr(trainer, "_compute_advantage", None)
    tq = getattr(module, "tq", None)
    if method is None or not _has_params(method, ["self", "batch", "metrics"]):
        return _problem(_V1, "PPOTrainer._compute_advantage(self, batch, metrics) not found")
    if tq is None or not hasattr(tq, "kv_batch_get"):
        return _problem(_V1, "transfer_queue.kv_batch_get not found")

    def make(original: Callable) -> Callable:
        def _compute_advantage(self, batch, metrics):
            if not _is_tempo(self.config.algorithm.adv_estimator):
                return original(self, batch, metrics)
            start = time.perf_counter()
            fetched = tq.kv_batch_get(keys=batch.keys, partition_id=batch.partition_id, select_fields=["responses"])
            nested = fetched["responses"]
            if getattr(nested, "is_nested", False):
                lengths = nested.offsets().diff()
                responses = nested.to_padded_tensor(0)
            else:  # already padded (a backend that stores fixed-width rows): lengths from the mask later
                lengths, responses = None, nested
            fetch_s = time.perf_counter() - start
            inputs = TokenInputs(responses=responses, lengths=lengths, step=getattr(self, "global_steps", None))
            with token_inputs(inputs):
                out = original(self, batch, metrics)
            metrics.update(inputs.metrics)
            metrics["tempo/hook_fetch_time_s"] = fetch_s
            return out

        return _compute_advantage

    _wrap(trainer, "_compute_advantage", make)


# --- legacy trainer -----------------------------------------------------------------------------


def _patch_legacy(module: ModuleType) -> None:
    if not _has_params(getattr(module, "compute_advantage", None), ["data", "adv_estimator"]):
        return _problem(_LEGACY, "compute_advantage(data, adv_estimator, ...) not found")
    if not callable(getattr(module, "compute_data_metrics", None)):
        return _problem(_LEGACY, "compute_data_metrics not found")

    def make_advantage(original: Callable) -> Callable:
        def compute_advantage(data, adv_estimator, *args, **kwargs):
            batch = data.batch
            if not _is_tempo(adv_estimator) or current_inputs() is not None or "responses" not in batch.keys():  # noqa: SIM118 (TensorDict)
                return original(data, adv_estimator, *args, **kwargs)
            responses = batch["responses"]
            width = responses.shape[1]
            inputs = TokenInputs(
                responses=responses,
                attention=response_attention(batch["attention_mask"], width),
                step=data.meta_info.get("global_steps"),
            )
            with token_inputs(inputs):
                out = original(data, adv_estimator, *args, **kwargs)
            _pending_legacy_metrics[:] = [(weakref.ref(out), inputs.metrics)]
            return out

        return compute_advantage

    def make_metrics(original: Callable) -> Callable:
        def compute_data_metrics(batch, *args, **kwargs):
            result = original(batch, *args, **kwargs)
            if _pending_legacy_metrics and _pending_legacy_metrics[0][0]() is batch:
                result.update(_pending_legacy_metrics.pop()[1])
            return result

        return compute_data_metrics

    _wrap(module, "compute_advantage", make_advantage)
    _wrap(module, "compute_data_metrics", make_metrics)


# --- start-up check -----------------------------------------------------------------------------


def _patch_validate_config(module: ModuleType) -> None:
    if not callable(getattr(module, "validate_config", None)):
        return _problem("verl.utils.config", "validate_config not found (no start-up check)")

    def make(original: Callable) -> Callable:
        def validate_config(config, *args, **kwargs):
            if selects_tree(config):
                check_tree_run(config)
            algorithm = config.get("algorithm") if hasattr(config, "get") else None
            if algorithm is not None and _is_tempo(algorithm.get("adv_estimator")):
                trainer = config.get("trainer") or {}
                _import_trainer(_V1 if trainer.get("use_v1", True) else _LEGACY)
                check_run_config(config)
            return original(config, *args, **kwargs)

        return validate_config

    _wrap(module, "validate_config", make)


def _import_trainer(name: str) -> None:
    """Import the trainer module a run will use, so that its patch is applied (or its problem recorded) now."""
    try:
        __import__(name)
    except Exception as err:
        _problem(name, f"cannot be imported ({type(err).__name__}: {err})")


def install() -> None:
    """Install the hook: each patch is applied when verl imports the module it patches. Idempotent."""
    try:
        from importlib.metadata import version

        found = version("verl")
    except Exception:
        found = None
    if found is not None and found not in SUPPORTED_VERL:
        logger.warning(
            "tempo-verl: verl %s is not a tested release (tested: %s); the hook checks what it patches.",
            found,
            ", ".join(SUPPORTED_VERL),
        )
    when_imported("verl.utils.config", _patch_validate_config)
    when_imported(_LEGACY, _patch_legacy)
    when_imported(_V1, _patch_v1)
