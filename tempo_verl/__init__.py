"""tempo-verl: TEMPO tree-structured credit assignment for LLM RL, as a verl plugin.

``compute_tempo_advantage`` is the estimator (pure torch, :mod:`tempo_verl.core`). Importing the
package also registers it in verl's advantage-estimator registry as ``tempo`` when verl is installed
(:mod:`tempo_verl.plugin`); ``import verl`` alone does the same through the ``verl.plugins`` entry point.
"""

from tempo_verl import plugin as _plugin  # noqa: F401  (registers `tempo` once verl's registry is imported)
from tempo_verl.core import PrefixForest, build_prefix_forest, compute_tempo_advantage, tempo_advantage_and_forest

__all__ = ["PrefixForest", "build_prefix_forest", "compute_tempo_advantage", "tempo_advantage_and_forest"]
__version__ = "0.1.0"
