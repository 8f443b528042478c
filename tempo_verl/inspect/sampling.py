"""Sample each prompt's group twice from one model and one seed stream: independently, and as a tree.

Both go through the ``tempo_tree`` agent loop on the CPU/GPU backend of :mod:`tempo_verl.rollout`
(the code path of ``tempo-verl demo``): ``roots = n`` is independent sampling, fewer roots a tree.
Every session's seed derives from the same ``--seed`` (per prompt and session), so a tree's roots are
the independent run's first responses. Responses are graded by the recipes' ``compute_score``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tempo_verl.inspect.model import Policy
from tempo_verl.inspect.prompts import Prompt
from tempo_verl.recipes.rewards import compute_score
from tempo_verl.rollout.backend import TransformersServer
from tempo_verl.rollout.local import agent_loop_factory, rollout_groups

__all__ = ["PROMPT_LENGTH", "Groups", "TimedServer", "grade", "sample_groups", "sampling_params"]

#: Longest chat-templated prompt, in tokens (verl's agent loop left-truncates longer ones).
PROMPT_LENGTH = 4096


def sampling_params(seed: int, **extra: Any) -> dict[str, Any]:
    """verl's rollout sampling at temperature 1 from the full distribution (on-policy RL sampling)."""
    return {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": False, "seed": seed, **extra}


class TimedServer:
    """The server, recording every request: ``(start, end, generated tokens)`` in :attr:`calls`.

    It sits under the agent loop's client, so a tree branch's tokens are counted once (its prefix is
    its parent's and is not generated again).
    """

    def __init__(self, server: TransformersServer, on_call: Callable[[int], None] | None = None) -> None:
        self.server = server
        self.on_call = on_call
        self.calls: list[tuple[float, float, int]] = []

    async def generate(self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs):
        start = time.perf_counter()
        out = await self.server.generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs)
        self.calls.append((start, time.perf_counter(), len(out.token_ids)))
        if self.on_call is not None:
            self.on_call(len(self.calls))
        return out

    def phases(self, since: float) -> dict[str, float]:
        """Wall seconds of the first wave of requests (those sent before any came back: a tree's roots)
        and of everything after it (the branches)."""
        if not self.calls:
            return {"first_wave_s": 0.0, "later_s": 0.0}
        first_back = min(end for _, end, _ in self.calls)
        wave_end = max(end for start, end, _ in self.calls if start <= first_back)
        last = max(end for _, end, _ in self.calls)
        return {"first_wave_s": wave_end - since, "later_s": last - wave_end}


@dataclass
class Groups:
    """One mode's groups, graded. Rows of a group are adjacent; ``P`` prompts, ``G`` responses each.

    Attributes:
        mode: ``independent`` or ``tree``.
        prompt_ids: ``(P,)`` the chat-templated prompt ids of each group.
        responses: ``(P*G, L)`` int64 response ids, right-padded with the pad id.
        lengths: ``(P*G,)`` int64 valid lengths (eos included when sampled).
        uids: ``(P*G,)`` object, the group of each row.
        scores: ``(P*G,)`` float32 ``compute_score`` of each response.
        texts: ``(P*G,)`` decoded responses (special tokens dropped), as graded.
        generated_tokens: tokens the model generated for this mode.
        phases: wall seconds: ``sampling_s`` (and for a tree ``roots_s``, ``branches_s``), ``grading_s``.
    """

    mode: str
    prompt_ids: list[list[int]]
    responses: torch.Tensor
    lengths: torch.Tensor
    uids: np.ndarray
    scores: torch.Tensor
    texts: list[str]
    generated_tokens: int
    phases: dict[str, float]


def grade(policy: Policy, prompt: Prompt, ids: Sequence[int]) -> tuple[str, float]:
    """The decoded response and its ``compute_score`` (model output never raises; a data error does)."""
    text = policy.tokenizer.decode(list(ids), skip_special_tokens=True)
    return text, float(compute_score(prompt.data_source, text, prompt.ground_truth, prompt.extra_info))


def sample_groups(
    policy: Policy,
    prompts: Sequence[Prompt],
    n: int,
    roots: int,
    max_new_tokens: int,
    seed: int,
    loop: asyncio.AbstractEventLoop,
    on_response: Callable[[int], None] | None = None,
) -> Groups:
    """``n`` responses per prompt at temperature 1, ``roots`` of them from the prompt alone (``roots = n``:
    independent), through the ``tempo_tree`` agent loop; then graded. ``on_response(k)``: k responses are back."""
    mode = "independent" if roots >= n else "tree"
    backend = TransformersServer(policy.model, policy.eos_token_id, policy.pad_token_id, max_new_tokens)
    server = TimedServer(backend, on_response)
    uids = [f"p{i}" for i in range(len(prompts))]

    async def rollout() -> list:
        make_loop = agent_loop_factory(server, policy.tokenizer, n, PROMPT_LENGTH, max_new_tokens, {"roots": roots})
        return await rollout_groups(make_loop, [p.text for p in prompts], uids, n, sampling_params(seed))

    start = time.perf_counter()
    outputs = loop.run_until_complete(rollout())
    sampling_s = time.perf_counter() - start
    waves = server.phases(start)
    phases = {"sampling_s": sampling_s}
    if mode == "tree":
        phases.update(roots_s=waves["first_wave_s"], branches_s=sampling_s - waves["first_wave_s"])

    start = time.perf_counter()
    rows = [out for group in outputs for out in group]
    graded = [grade(policy, prompts[i // n], out.response_ids) for i, out in enumerate(rows)]
    phases["grading_s"] = time.perf_counter() - start
    lengths = torch.tensor([len(out.response_ids) for out in rows], dtype=torch.long)
    responses = torch.full((len(rows), max(1, int(lengths.max()))), policy.pad_token_id, dtype=torch.long)
    for i, out in enumerate(rows):
        responses[i, : len(out.response_ids)] = torch.tensor(out.response_ids, dtype=torch.long)
    return Groups(
        mode=mode,
        prompt_ids=[list(group[0].prompt_ids) for group in outputs],
        responses=responses,
        lengths=lengths,
        uids=np.array([uids[i // n] for i in range(len(rows))], dtype=object),
        scores=torch.tensor([s for _, s in graded], dtype=torch.float32),
        texts=[t for t, _ in graded],
        generated_tokens=sum(k for _, _, k in server.calls),
        phases=phases,
    )
