"""The ``tempo_tree`` agent loop's glue in verl's worker and trainer (feature ``tempo_tree``).

- registration: when verl imports its agent-loop registry, :mod:`tempo_verl.rollout.loop` is
  imported, which registers the loop where it is defined (``@register("tempo_tree")``);
- validation signal: ``AgentLoopWorker._run_agent_loop`` is wrapped to hand verl's
  ``trajectory["validate"]`` to the loop (:func:`tempo_verl.rollout.loop.validation_flag`), so
  validation rollouts run the stock single-turn path;
- metrics: the v1 trainer's ``PPOTrainer._compute_metrics`` is wrapped to add ``rollout_tree/*``
  (:func:`tempo_verl.rollout.metrics.read_step_metrics`) in a ``tempo_tree`` run.

Both wrappers call verl's original unchanged for every other run; whatever cannot be applied is a
problem of the ``tempo_tree`` feature only (:mod:`tempo_verl.plugin.patch`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType

from tempo_verl.plugin import patch
from tempo_verl.rollout import AGENT_LOOP_NAME
from tempo_verl.rollout.config import selects_tree

__all__ = ["install"]

AGENT_LOOP_MODULE = "verl.experimental.agent_loop.agent_loop"
V1_TRAINER = "verl.trainer.ppo.v1.trainer_base"


def _register_loop(module: ModuleType) -> None:
    importlib.import_module("tempo_verl.rollout.loop")  # registers the loop at its definition
    if AGENT_LOOP_NAME not in getattr(module, "_agent_loop_registry", {}):
        patch.problem(AGENT_LOOP_NAME, AGENT_LOOP_MODULE, f"{AGENT_LOOP_NAME} is not in verl's agent-loop registry")

    def make(original: Callable) -> Callable:
        from tempo_verl.rollout.loop import validation_flag

        async def _run_agent_loop(self, sampling_params, trajectory, *args, **kwargs):
            # Only reads verl's own flag; anything unexpected leaves the signal unknown (None), never raises.
            flag = trajectory.get("validate") if isinstance(trajectory, dict) else None
            with validation_flag(None if flag is None else bool(flag)):
                return await original(self, sampling_params, trajectory, *args, **kwargs)

        return _run_agent_loop

    worker = getattr(module, "AgentLoopWorker", None)
    patch.wrap(AGENT_LOOP_NAME, worker, "_run_agent_loop", make, ["self", "sampling_params", "trajectory"])


def _patch_metrics(module: ModuleType) -> None:
    tq = getattr(module, "tq", None)
    if tq is None or not hasattr(tq, "kv_batch_get"):
        return patch.problem(AGENT_LOOP_NAME, V1_TRAINER, "transfer_queue.kv_batch_get not found")

    def make(original: Callable) -> Callable:
        from tempo_verl.rollout.metrics import read_step_metrics

        def _compute_metrics(self, batch, metrics, *args, **kwargs):
            out = original(self, batch, metrics, *args, **kwargs)
            if selects_tree(self.config):
                metrics.update(read_step_metrics(tq, batch))
            return out

        return _compute_metrics

    trainer = getattr(module, "PPOTrainer", None)
    patch.wrap(AGENT_LOOP_NAME, trainer, "_compute_metrics", make, ["self", "batch", "metrics"])


def install() -> None:
    """Register the loop and apply its two wrappers when verl imports their modules. Idempotent."""
    patch.when_imported(AGENT_LOOP_NAME, AGENT_LOOP_MODULE, _register_loop)
    patch.when_imported(AGENT_LOOP_NAME, V1_TRAINER, _patch_metrics)


def import_loop_modules() -> None:
    """Import what a ``tempo_tree`` run's workers will import, so that a missing patch stops the run at start-up."""
    for name in (AGENT_LOOP_MODULE, V1_TRAINER):
        try:
            importlib.import_module(name)
        except Exception as err:
            patch.problem(AGENT_LOOP_NAME, name, f"cannot be imported ({type(err).__name__}: {err})")
