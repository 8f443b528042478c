"""Tree rollouts for stock verl: the ``tempo_tree`` agent loop samples each group as a prefix tree.

A few sessions of a group (the roots) sample whole responses; the others (the branches) wait for
them, then continue a root's prefix from the point where the policy was least sure (highest
surprisal ``-log p``). Every response is still a full on-policy sample, so rewards, estimators
(``grpo`` too) and the actor see ordinary groups of ``rollout.n`` -- with shared prefixes, which is
where TEMPO's credit lives, and fewer generated tokens.

- :mod:`~tempo_verl.rollout.config`: the knobs (``actor_rollout_ref.rollout.custom.tree.*``) and the start-up check.
- :mod:`~tempo_verl.rollout.plan`: the branch-point rule (pure python, no verl).
- :mod:`~tempo_verl.rollout.group`: the per-prompt coordination of a group's sessions (module-level registry).
- :mod:`~tempo_verl.rollout.loop`: the agent loop verl instantiates (registered where it is defined).
- :mod:`~tempo_verl.rollout.metrics`: the ``rollout_tree/*`` metrics of a step.
- :mod:`~tempo_verl.rollout.backend`, :mod:`~tempo_verl.rollout.local`: a CPU generation server with
  verl's ``generate`` contract, and an in-process driver (tests, demo).
- :mod:`~tempo_verl.rollout.sim`: a rollout-time simulator of a generation server, driving the plan (benchmarks).

This room holds behaviour only. Nothing here is imported by ``import verl`` and nothing here patches
verl: :mod:`tempo_verl.plugin` imports the loop when verl imports its agent-loop registry, and wires
the validation signal and the metrics into verl's worker and trainer.
"""

AGENT_LOOP_NAME = "tempo_tree"
#: ``AgentLoopOutput.extra_fields`` key of a response's tree statistics (written by the loop, read by the metrics).
STATS_KEY = "tempo_tree"
