"""The start-up check: verl's ``validate_config`` (what ``main_ppo`` calls before any worker starts) checks
tempo-verl's knobs and patches too, in one place.

:func:`check_run` stops a run with one line when

- a tree knob is out of place, set without the ``tempo_tree`` loop, or bad, or the loop is selected
  with a trainer it does not support (:func:`tempo_verl.rollout.config.check_tree_run`);
- an ``algorithm.tempo`` knob is bad or out of place (:func:`tempo_verl.plugin.config.check_run_config`);
- a patch of the feature the run uses is missing (:func:`tempo_verl.plugin.patch.check`): a ``tempo``
  run sees only the estimator's problems, a ``tempo_tree`` run only the loop's.

Any other run passes through unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType
from typing import Any

from tempo_verl.knobs import get
from tempo_verl.plugin import hook, patch, tree
from tempo_verl.plugin.config import check_run_config
from tempo_verl.plugin.state import ESTIMATOR_NAME, is_tempo
from tempo_verl.rollout import AGENT_LOOP_NAME
from tempo_verl.rollout.config import check_tree_run, selects_tree

__all__ = ["check_run", "install"]

VERL_CONFIG = "verl.utils.config"


def check_run(config: Any) -> None:
    """Check a verl run config at start-up (see the module docstring).

    Raises:
        ValueError: a bad or misplaced knob, or a trainer the tree loop does not support (one line).
        RuntimeError: a patch the run needs is missing in this verl (one line).
    """
    check_tree_run(config)
    if selects_tree(config):
        tree.import_loop_modules()
        patch.check(AGENT_LOOP_NAME)
    if is_tempo(get(get(config, "algorithm", None), "adv_estimator", None)):
        check_run_config(config)
        hook.import_trainer(config)
        patch.check(ESTIMATOR_NAME)


def _patch_validate_config(module: ModuleType) -> None:
    def make(original: Callable) -> Callable:
        def validate_config(config, *args, **kwargs):
            check_run(config)
            return original(config, *args, **kwargs)

        return validate_config

    if not patch.wrap(ESTIMATOR_NAME, module, "validate_config", make, ["config"]):  # one check serves both
        patch.problem(AGENT_LOOP_NAME, f"{VERL_CONFIG}.validate_config", "not found (no start-up check)")


def install() -> None:
    """Wrap verl's ``validate_config`` when verl imports it. Idempotent."""
    patch.when_imported(ESTIMATOR_NAME, VERL_CONFIG, _patch_validate_config)
