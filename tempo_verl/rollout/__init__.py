"""Tree rollouts for stock verl: the ``tempo_tree`` agent loop samples each group as a prefix tree.

A few sessions of a group (the roots) sample whole responses; the others (the branches) wait for
them, then continue a root's prefix from the point where the policy was least sure (highest
surprisal ``-log p``). Every response is still a full on-policy sample, so rewards, estimators
(``grpo`` too) and the actor see ordinary groups of ``rollout.n`` -- with shared prefixes, which is
where TEMPO's credit lives, and fewer generated tokens.

- :mod:`~tempo_verl.rollout.config`: the knobs (``actor_rollout_ref.rollout.custom.tree.*``) and the start-up check.
- :mod:`~tempo_verl.rollout.plan`: the branch-point rule (pure python, no verl).
- :mod:`~tempo_verl.rollout.group`: the per-prompt coordination of a group's sessions (module-level registry).
- :mod:`~tempo_verl.rollout.loop`: the agent loop verl instantiates, and its registration.
- :mod:`~tempo_verl.rollout.metrics`: the ``rollout_tree/*`` metrics in the v1 trainer's metrics dict.
- :mod:`~tempo_verl.rollout.backend`: a CPU generation server with verl's ``generate`` contract (tests, demo).
- :mod:`~tempo_verl.rollout.sim`: a rollout-time simulator of a generation server, driving the plan (benchmarks).

Nothing here is imported by ``import verl``: :mod:`tempo_verl.plugin` registers the loop when verl
imports its agent-loop registry.
"""

AGENT_LOOP_NAME = "tempo_tree"

#: What kept the loop from being installed in this process (its start-up check then refuses the run).
install_problems: list[str] = []
