"""Everything that patches verl or hooks into it: ``algorithm.adv_estimator=tempo`` and the ``tempo_tree``
agent loop in a stock verl run.

Loaded by ``import verl`` in every verl process through the ``verl.plugins`` entry point (and by
``import tempo_verl``). Nothing is imported from verl here: every registration and patch is applied
when verl itself imports the module concerned, through the one mechanism of
:mod:`tempo_verl.plugin.patch`, which keeps what could not be applied per feature. Nothing here
changes what verl does for any other estimator or loop.

- :mod:`~tempo_verl.plugin.patch`: when verl imports M, wrap M.X once for a feature, or record why not.
- :mod:`~tempo_verl.plugin.state`: what the hook and the estimator share for one advantage step.
- :mod:`~tempo_verl.plugin.config`: the ``algorithm.tempo.*`` knobs.
- :mod:`~tempo_verl.plugin.estimator`: the registry entry (verl's call in, TEMPO's answer out).
- :mod:`~tempo_verl.plugin.hook`: the responses hook for verl 0.9.1 (delete when verl passes the batch).
- :mod:`~tempo_verl.plugin.tree`: the ``tempo_tree`` loop's registration, validation signal and metrics.
- :mod:`~tempo_verl.plugin.startup`: the start-up check in verl's ``validate_config``.
"""

from __future__ import annotations

import importlib.util
import logging
from types import ModuleType

from tempo_verl.plugin import patch
from tempo_verl.plugin.state import ESTIMATOR_NAME

__all__ = ["install"]

logger = logging.getLogger(__name__)


def _register_estimator(core_algos: ModuleType) -> None:
    from tempo_verl.plugin.estimator import tempo_estimator

    try:
        core_algos.register_adv_est(ESTIMATOR_NAME)(tempo_estimator)
    except ValueError as err:  # another function holds the name
        patch.problem(ESTIMATOR_NAME, "verl.trainer.ppo.core_algos.register_adv_est", str(err))


def install() -> None:
    """Register ``tempo`` and ``tempo_tree`` and apply the patches, each when verl imports its module. Idempotent.

    Without verl installed this installs nothing (no import machinery).
    """
    try:
        verl_spec = importlib.util.find_spec("verl")
    except (ImportError, ValueError):
        verl_spec = None
    if verl_spec is None:
        return
    try:
        from tempo_verl.plugin import hook, startup, tree

        patch.warn_untested_verl()
        patch.when_imported(ESTIMATOR_NAME, "verl.trainer.ppo.core_algos", _register_estimator)
        hook.install()
        tree.install()
        startup.install()
    except Exception:  # verl's plugin loader would swallow this at DEBUG level: say it loudly
        logger.error("tempo-verl: the plugin failed to install; tempo and tempo_tree are unavailable.", exc_info=True)


install()
