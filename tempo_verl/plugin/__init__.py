"""Everything that imports or patches verl: ``algorithm.adv_estimator=tempo`` in a stock verl run.

Loaded by ``import verl`` in every verl process through the ``verl.plugins`` entry point (and by
``import tempo_verl``). Nothing is imported from verl here: the ``tempo`` estimator is registered,
and the responses hook applied, when verl itself imports the modules concerned
(:mod:`tempo_verl.plugin.post_import`). Nothing here changes what verl does for any other estimator.

- :mod:`~tempo_verl.plugin.state`: what the hook and the estimator share for one advantage step.
- :mod:`~tempo_verl.plugin.config`: the ``algorithm.tempo.*`` knobs and the start-up check.
- :mod:`~tempo_verl.plugin.estimator`: the registry entry (verl's call in, TEMPO's answer out).
- :mod:`~tempo_verl.plugin.hook`: the responses hook for verl 0.9.1 (delete when verl passes the batch).
"""

from __future__ import annotations

import importlib.util
import logging

from tempo_verl.plugin.post_import import when_imported
from tempo_verl.plugin.state import ESTIMATOR_NAME, hook_problems

__all__ = ["install"]

logger = logging.getLogger(__name__)


def _register(core_algos) -> None:
    from tempo_verl.plugin.estimator import tempo_estimator

    try:
        core_algos.register_adv_est(ESTIMATOR_NAME)(tempo_estimator)
    except ValueError as err:
        logger.warning("tempo-verl: could not register adv_estimator '%s': %s", ESTIMATOR_NAME, err)


def _register_tree_loop(agent_loop) -> None:
    from tempo_verl.rollout.loop import install as install_tree_loop

    install_tree_loop(agent_loop)


def _patch_tree_metrics(trainer_base) -> None:
    from tempo_verl.rollout.metrics import patch_v1_trainer

    patch_v1_trainer(trainer_base)


def install() -> None:
    """Register ``tempo`` and the ``tempo_tree`` agent loop (when verl imports their registries) and
    install the responses hook. Idempotent.

    Without verl installed this installs nothing (no import machinery).
    """
    try:
        verl_spec = importlib.util.find_spec("verl")
    except (ImportError, ValueError):
        verl_spec = None
    if verl_spec is None:
        return
    try:
        from tempo_verl.plugin import hook

        when_imported("verl.trainer.ppo.core_algos", _register)
        when_imported("verl.experimental.agent_loop.agent_loop", _register_tree_loop)  # tempo_verl.rollout
        when_imported("verl.trainer.ppo.v1.trainer_base", _patch_tree_metrics)
        hook.install()
    except Exception as err:  # verl's plugin loader would swallow this at DEBUG level: say it loudly
        logger.error("tempo-verl: the plugin failed to install; adv_estimator=tempo will refuse to run.", exc_info=True)
        hook_problems.append(f"plugin install failed ({type(err).__name__}: {err})")


install()
