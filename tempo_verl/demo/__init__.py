"""``tempo-verl demo``: TEMPO against verl's GRPO on a small verifiable task, on any machine.

- :mod:`tempo_verl.demo.task`: the parity task and its checker.
- :mod:`tempo_verl.demo.model`: a tiny Qwen3-style LM, a local tokenizer, the format warm-up, sampling.
- :mod:`tempo_verl.demo.loop`: the RL loop (verl's advantage registry and policy loss).
- :mod:`tempo_verl.demo.report`: ``summary.json``, ``curves.png``, the tree picture.

The submodules import verl and transformers; import them directly.
"""
