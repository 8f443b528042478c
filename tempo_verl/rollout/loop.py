"""The ``tempo_tree`` agent loop: verl's single-turn loop whose generation goes through the group's tree.

:class:`TreeAgentLoop` is verl's ``SingleTurnAgentLoop`` (same prompt building, same output: prompt
ids, response ids, response mask, response logprobs) with one change: its ``server_manager`` is
a :class:`TreeClient` for the session, which

- for a root: generates from the prompt, as the stock loop does, and records the response;
- for a branch: waits for its point ``(parent, t)``, generates from ``prompt + parent[:t]`` with
  ``max_tokens = response_length - t``, and answers ``parent[:t] + continuation`` with the parent's
  logprobs on the prefix: one full on-policy response, as if it had been sampled in one go;
- for a root under ``schedule=segments``: requests ``segment_tokens`` at a time, each from the
  prompt and its tokens so far (its own seed), recording each finished segment so that branches
  can start inside it; the answer is the whole response, the same kind of sample.

All requests of a group use one routing key (``tempo_tree-{uid}``), so verl's router sends the
branches to the server that holds their prefix (vLLM prefix caching). Validation rollouts run the
stock loop unchanged, so validation groups stay independent: verl marks them in
``trajectory["validate"]``, which it does not pass to ``run()``; the plugin's wrapper of
``AgentLoopWorker._run_agent_loop`` (:mod:`tempo_verl.plugin.tree`) hands it over in
:func:`validation_flag`.

verl builds one loop object per session (``hydra.utils.instantiate`` in ``_run_agent_loop``), so a
session's client is simply this loop's ``server_manager``. The loop is registered as ``tempo_tree``
where it is defined, as verl's own loops are.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import time
from collections.abc import Iterator
from typing import Any

from verl.experimental.agent_loop.agent_loop import AgentLoopOutput, register
from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop
from verl.workers.rollout.replica import TokenOutput

from tempo_verl.rollout import AGENT_LOOP_NAME, STATS_KEY
from tempo_verl.rollout.config import TreeRolloutConfig, read_tree_config
from tempo_verl.rollout.group import TreeGroup, joined

__all__ = ["TreeAgentLoop", "TreeClient", "validating", "validation_flag"]

_validating: contextvars.ContextVar[bool | None] = contextvars.ContextVar("tempo_tree_validating", default=None)


def validating() -> bool | None:
    """Whether the current agent-loop call is a validation rollout (None outside verl's worker)."""
    return _validating.get()


@contextlib.contextmanager
def validation_flag(flag: bool | None) -> Iterator[None]:
    """Within the block, :func:`validating` answers ``flag`` (verl's ``trajectory["validate"]``; None: unknown)."""
    token = _validating.set(flag)
    try:
        yield
    finally:
        _validating.reset(token)


def session_seed(seed: int, uid: str, session: int) -> int:
    """A per-session seed from a request seed: the ``n`` sessions of a group must not share one."""
    digest = hashlib.blake2b(f"{seed}/{uid}/{session}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


class TreeClient:
    """The ``server_manager`` one session of a tree group sees (verl's ``generate`` contract).

    Args:
        stop_ids: token ids that end a response (a segmented root stops there, as the server would).
        segment: tokens per request of a segmented root (``TreePlan.segmented``).
    """

    def __init__(
        self,
        server: Any,
        group: TreeGroup,
        session: int,
        response_length: int,
        routing_key: str,
        stop_ids: frozenset[int] = frozenset(),
        segment: int = 0,
    ) -> None:
        self.server = server
        self.group = group
        self.session = session
        self.response_length = response_length
        self.routing_key = routing_key
        self.stop_ids = stop_ids
        self.segment = segment
        self.stats: dict[str, float] = {}

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs):
        """Generate this session's response: from the prompt (root, fallback) or from its parent's prefix (branch)."""
        group, session = self.group, self.session
        wants_logprobs = bool(sampling_params.get("logprobs"))
        params = dict(sampling_params, logprobs=True)  # the rule needs the roots' logprobs
        start = time.perf_counter()
        point = await group.wait_plan(session) if group.round_of(session) > 0 else None
        waited = time.perf_counter() - start
        ids, logprobs, depth, parent_key = [], [], 0, -1
        if point is not None:
            parent, depth = point
            parent_key = parent.key
            ids, logprobs = list(parent.ids[:depth]), list(parent.logprobs[:depth])
        segmented = group.plan.segmented(session) and self.segment > 0
        inputs = generated = cached = preempted = 0
        seen_cached, outs = False, []
        while True:  # one request, or a segmented root's segments (each continues the tokens so far)
            step = dict(params)  # a root's single request keeps the server's own budget, as the stock loop's
            if segmented or point is not None:
                step["max_tokens"] = self.response_length - len(ids)
                if segmented:
                    step["max_tokens"] = min(step["max_tokens"], self.segment)
            if outs and params.get("seed") is not None:
                step["seed"] = session_seed(int(params["seed"]), "segment", len(outs))
            out: TokenOutput = await self.server.generate(
                self.routing_key, prompt_ids=list(prompt_ids) + ids, sampling_params=step, **kwargs
            )
            outs.append(out)
            inputs += len(prompt_ids) + len(ids)
            ids += list(out.token_ids)
            logprobs += list(out.log_probs or [0.0] * len(out.token_ids))
            generated += len(out.token_ids)
            preempted += out.num_preempted or 0
            if out.extra_fields.get("num_cached_tokens") is not None:
                seen_cached, cached = True, cached + out.extra_fields["num_cached_tokens"]
            ended = (
                not segmented
                or len(out.token_ids) < step["max_tokens"]
                or len(ids) >= self.response_length
                or (out.token_ids and out.token_ids[-1] in self.stop_ids)
                or out.stop_reason not in (None, "completed", "length")
            )
            if ended:
                break
            group.record(session, ids, logprobs, depth, done=False)
        group.record(session, ids, logprobs, depth)
        self.stats = {
            "branch": float(group.round_of(session) > 0),
            "fallback": float(group.round_of(session) > 0 and point is None),
            "depth": float(depth),
            "parent": float(parent_key),
            "generated_tokens": float(generated),
            "response_tokens": float(len(ids)),
            "input_tokens": float(inputs),
            "cached_tokens": float(cached) if seen_cached else -1.0,
            "wait_s": waited,
        }
        return TokenOutput(
            token_ids=ids,
            log_probs=logprobs if wants_logprobs else None,
            routed_experts=out.routed_experts if point is None and len(outs) == 1 else None,
            stop_reason=out.stop_reason,
            num_preempted=preempted if any(o.num_preempted is not None for o in outs) else None,
            extra_fields=out.extra_fields,
        )


@register(AGENT_LOOP_NAME)
class TreeAgentLoop(SingleTurnAgentLoop):
    """verl's single-turn agent loop, sampling each training group as a prefix tree (name ``tempo_tree``).

    Knobs: :class:`~tempo_verl.rollout.config.TreeRolloutConfig` at ``actor_rollout_ref.rollout.custom.tree``.
    ``run()`` needs the ``uid`` and ``session_id`` verl's v1 worker passes; the group size is
    ``actor_rollout_ref.rollout.n``. One object per session, as verl builds them.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.tree: TreeRolloutConfig = read_tree_config(self.rollout_config)
        self.n = int(self.rollout_config.n)
        # A segmented root stops where the server would: the tokenizer's end-of-sequence and pad ids.
        self.stop_ids = frozenset(
            int(t) for t in (self.tokenizer.eos_token_id, self.tokenizer.pad_token_id) if t is not None
        )

    async def run(self, sampling_params: dict[str, Any], **kwargs) -> AgentLoopOutput:
        uid, session = kwargs.get("uid"), kwargs.get("session_id")
        if uid is None or session is None:
            raise RuntimeError(
                f"{AGENT_LOOP_NAME}: run() got no uid/session_id; the loop needs verl's v1 agent-loop worker "
                "(trainer.use_v1=True)."
            )
        uid, session = str(uid), int(session)
        if sampling_params.get("seed") is not None:
            sampling_params = dict(sampling_params, seed=session_seed(int(sampling_params["seed"]), uid, session))
        if validating():
            return await super().run(sampling_params, **kwargs)
        tree = self.tree
        roots, length = tree.num_roots(self.n), int(self.rollout_config.response_length)
        server = self.server_manager
        with joined(uid, session, self.n, roots, tree.rounds, tree.rule, tree.wait_timeout_s, tree.schedule) as group:
            self.server_manager = client = TreeClient(
                server,
                group,
                session,
                length,
                f"tempo_tree-{uid}",
                stop_ids=self.stop_ids,
                segment=tree.segment_length(length),
            )
            try:
                output = await super().run(sampling_params, **kwargs)
            finally:
                self.server_manager = server
        output.extra_fields[STATS_KEY] = client.stats
        return output
