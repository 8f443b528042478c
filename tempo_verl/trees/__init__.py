"""Prefix trees on disk and on screen: the ``tempo-tree/1`` dump, its readers, the HTML/SVG pictures.

- :mod:`~tempo_verl.trees.format`: the format (fields, file names, validation, per-token values).
- :mod:`~tempo_verl.trees.records`: records from the estimator's PrefixForest.
- :mod:`~tempo_verl.trees.writer`: the background writer used during training.
- :mod:`~tempo_verl.trees.readers`: reading our dumps and verl's rollout JSONL (and the tokenizer).
- :mod:`~tempo_verl.trees.layout`, :mod:`~tempo_verl.trees.svg`, :mod:`~tempo_verl.trees.render`:
  the compressed tree's layout, one group's SVG, the HTML page.
"""

from tempo_verl.trees.format import TreeInputError, token_values
from tempo_verl.trees.readers import load_tree_input
from tempo_verl.trees.records import group_records
from tempo_verl.trees.render import render_html
from tempo_verl.trees.writer import TreeDumpWriter

__all__ = ["TreeDumpWriter", "TreeInputError", "group_records", "load_tree_input", "render_html", "token_values"]
