"""``tempo-verl demo``: TEMPO against verl's GRPO on a small verifiable task, on any machine.

- :mod:`tempo_verl.demo.config`: the settings (``DemoConfig``), checked before anything runs.
- :mod:`tempo_verl.demo.task`: the tasks (parity; the study's premise task ``rule``) and their checkers.
- :mod:`tempo_verl.demo.model`: a tiny Qwen3-style LM, a local tokenizer, the format warm-up, sampling.
- :mod:`tempo_verl.demo.loop`: the RL loop (verl's advantage registry and policy loss).
- :mod:`tempo_verl.demo.report`: ``summary.json``, ``curves.png``, the tree picture.
- :mod:`tempo_verl.demo.study`: ``tempo-verl study``, each arm at its best lr on paired seeds;
  :mod:`tempo_verl.demo.stats` (time to target, censoring, paired bootstrap) and
  :mod:`tempo_verl.demo.study_report` (table, figure); outputs are written whole or not at all
  (:mod:`tempo_verl.outputs`).

The submodules import verl and transformers; import them directly.
"""
