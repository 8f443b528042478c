"""tempo-verl: TEMPO tree-structured credit assignment for LLM RL, as a verl plugin.

``compute_tempo_advantage`` is the estimator (pure torch). Importing the package also registers
it in verl's advantage-estimator registry as ``tempo`` when verl is installed; ``import verl``
alone does the same through the ``verl.plugins`` entry point.
"""

from tempo_verl.advantage import compute_tempo_advantage, tempo_advantage_and_forest
from tempo_verl.config import DumpConfig, TempoConfig, read_algorithm_config
from tempo_verl.prefix_tree import PrefixForest, build_prefix_forest
from tempo_verl.verl_plugin import install as _install_verl_plugin

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

_install_verl_plugin()  # registers `tempo` once verl's registry is imported (no-op without verl)
