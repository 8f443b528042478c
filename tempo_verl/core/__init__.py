"""TEMPO in pure torch: no verl import, no config objects.

- :mod:`~tempo_verl.core.advantage`: the advantage formula (GRPO + TD at branch tokens). Start here.
- :mod:`~tempo_verl.core.forest`: the prefix trees of all groups, the prefix value V and the TD term.
- :mod:`~tempo_verl.core.groups`: which rows form a group (verl's uid grouping).
- :mod:`~tempo_verl.core.checks`: the input checks and the valid lengths of the masks.
- :mod:`~tempo_verl.core.metrics`: the ``tempo/*`` tree metrics of a forest.
"""

from tempo_verl.core.advantage import compute_tempo_advantage, tempo_advantage_and_forest
from tempo_verl.core.forest import PrefixForest, build_prefix_forest, expand_values
from tempo_verl.core.metrics import tree_metrics

__all__ = [
    "PrefixForest",
    "build_prefix_forest",
    "compute_tempo_advantage",
    "expand_values",
    "tempo_advantage_and_forest",
    "tree_metrics",
]
