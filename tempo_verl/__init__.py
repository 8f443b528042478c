"""tempo-verl: TEMPO tree-structured credit assignment for LLM RL, as a verl plugin.

``compute_tempo_advantage`` is the estimator (pure torch). Importing the package also registers
it in verl's advantage-estimator registry as ``tempo`` when verl is installed; ``import verl``
alone does the same through the ``verl.plugins`` entry point.
"""

# Importing the glue registers `tempo` once verl's registry is imported (a no-op without verl).
from tempo_verl import verl_plugin as _verl_plugin  # noqa: F401
from tempo_verl.advantage import compute_tempo_advantage, tempo_advantage_and_forest
from tempo_verl.config import DumpConfig, TempoConfig, read_algorithm_config
from tempo_verl.prefix_tree import PrefixForest, build_prefix_forest

__all__ = [
    "DumpConfig",
    "PrefixForest",
    "TempoConfig",
    "build_prefix_forest",
    "compute_tempo_advantage",
    "read_algorithm_config",
    "tempo_advantage_and_forest",
]
__version__ = "0.1.0"
