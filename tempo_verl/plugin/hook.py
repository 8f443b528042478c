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
- start-up: :func:`import_trainer` imports the trainer a ``tempo`` run will use, so that a missing
  patch stops the run in verl's ``validate_config`` (:mod:`tempo_verl.plugin.startup`).

Every wrapper calls verl's original unchanged for any other estimator; a wrapper that cannot be
applied is a problem of the ``tempo`` feature (:mod:`tempo_verl.plugin.patch`). When a verl release
passes the batch to estimators, delete this module, its ``install()`` call in :mod:`tempo_verl.plugin`
and its ``import_trainer()`` call in :mod:`tempo_verl.plugin.startup`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable
from types import ModuleType
from typing import Any

from tempo_verl.knobs import get
from tempo_verl.plugin import patch
from tempo_verl.plugin.state import (
    ESTIMATOR_NAME,
    TokenInputs,
    current_inputs,
    is_tempo,
    response_attention,
    token_inputs,
)

__all__ = ["import_trainer", "install"]

V1_TRAINER = "verl.trainer.ppo.v1.trainer_base"
LEGACY_TRAINER = "verl.trainer.ppo.ray_trainer"
#: The last legacy tempo step: (a weak reference to its DataProto, its metrics), until compute_data_metrics
#: sees that very batch. The legacy trainer keeps its metrics dict local to ``fit()``, and verl's registry
#: returns only (advantages, returns), so this is the one way the step's tree metrics reach its log; the
#: weak reference (not an id) cannot match a later batch that reuses a freed one's address.
_pending_legacy_metrics: list[tuple[weakref.ref, dict[str, float]]] = []


# --- v1 trainer ---------------------------------------------------------------------------------


def _patch_v1(module: ModuleType) -> None:
    tq = getattr(module, "tq", None)
    if tq is None or not hasattr(tq, "kv_batch_get"):
        return patch.problem(ESTIMATOR_NAME, V1_TRAINER, "transfer_queue.kv_batch_get not found")

    def make(original: Callable) -> Callable:
        def _compute_advantage(self, batch, metrics):
            if not is_tempo(self.config.algorithm.adv_estimator):
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

    trainer = getattr(module, "PPOTrainer", None)
    patch.wrap(ESTIMATOR_NAME, trainer, "_compute_advantage", make, ["self", "batch", "metrics"])


# --- legacy trainer -----------------------------------------------------------------------------


def _patch_legacy(module: ModuleType) -> None:
    def make_advantage(original: Callable) -> Callable:
        def compute_advantage(data, adv_estimator, *args, **kwargs):
            batch = data.batch
            if not is_tempo(adv_estimator) or current_inputs() is not None or "responses" not in batch.keys():  # noqa: SIM118 (TensorDict)
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

    patch.wrap(ESTIMATOR_NAME, module, "compute_advantage", make_advantage, ["data", "adv_estimator"])
    patch.wrap(ESTIMATOR_NAME, module, "compute_data_metrics", make_metrics, ["batch"])


# --- installation -------------------------------------------------------------------------------


def install() -> None:
    """Install the hook: each patch is applied when verl imports the module it patches. Idempotent."""
    patch.when_imported(ESTIMATOR_NAME, LEGACY_TRAINER, _patch_legacy)
    patch.when_imported(ESTIMATOR_NAME, V1_TRAINER, _patch_v1)


def import_trainer(config: Any) -> None:
    """Import the trainer a ``tempo`` run will use, so that its patch is applied (or its problem recorded) now."""
    name = V1_TRAINER if get(get(config, "trainer", None), "use_v1", True) else LEGACY_TRAINER
    try:
        __import__(name)
    except Exception as err:
        patch.problem(ESTIMATOR_NAME, name, f"cannot be imported ({type(err).__name__}: {err})")
