"""A CPU generation server with verl's ``server_manager.generate`` contract, on a transformers causal LM.

Not vLLM, but the same call and answer: ``await generate(request_id, prompt_ids=..., sampling_params=...)``
returns verl's ``TokenOutput`` (sampled token ids, their logprobs, ``stop_reason``; no prefix cache,
so no ``num_cached_tokens``). Requests that arrive together (the roots of every group of
a step, then the branches a round releases) are decoded as one left-padded batch with a KV cache.
A request's randomness is its own: ``sampling_params["seed"]`` seeds a generator per request, so a
response does not depend on which requests shared its batch (up to float rounding of the batch).

Used by the tests and by ``tempo-verl demo``: the loop under test is the loop users run.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from inspect import signature
from typing import Any

import torch
from verl.workers.rollout.replica import TokenOutput

__all__ = ["TransformersServer"]


@dataclass
class _Request:
    prompt_ids: list[int]
    params: dict[str, Any]
    future: asyncio.Future


class TransformersServer:
    """Batched sampling from a ``transformers`` causal LM (``model(input_ids, attention_mask, position_ids,
    past_key_values, use_cache)``), one asyncio event loop, no threads.

    Args:
        model: the policy (its current weights are used for every batch).
        eos_token_id, pad_token_id: stop token, and the id written into padding.
        max_tokens: default response budget when a request gives no ``max_tokens``.
        seed: seeds the generator of requests that carry no ``seed``.

    Attributes:
        batches: number of decoded batches; requests: number of requests served.
    """

    def __init__(self, model: Any, eos_token_id: int, pad_token_id: int, max_tokens: int, seed: int = 0) -> None:
        self.model = model
        self.eos_token_id = eos_token_id
        self.pad_token_id = pad_token_id
        self.max_tokens = max_tokens
        self._generator = torch.Generator().manual_seed(seed)
        self._pending: list[_Request] = []
        self._worker: asyncio.Task | None = None
        # the prefill needs the last position's logits only (a 49k vocabulary times every prompt token otherwise)
        self._last_logits = {"logits_to_keep": 1} if "logits_to_keep" in signature(model.forward).parameters else {}
        self.batches = 0
        self.requests = 0

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> TokenOutput:
        """Queue one request and wait for its batch (verl's ``LLMServerClient.generate`` signature)."""
        loop = asyncio.get_running_loop()
        request = _Request(list(prompt_ids), dict(sampling_params), loop.create_future())
        self._pending.append(request)
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._serve())
        return await request.future

    async def _serve(self) -> None:
        while self._pending:
            seen = -1
            while seen != len(self._pending):  # let the requests of this moment gather
                seen = len(self._pending)
                for _ in range(3):
                    await asyncio.sleep(0)
                await asyncio.sleep(0.001)
            batch, self._pending = self._pending, []
            try:
                outputs = self._decode(batch)
            except Exception as err:  # every request of the batch gets the error
                for r in batch:
                    if not r.future.done():
                        r.future.set_exception(err)
                continue
            for r, out in zip(batch, outputs, strict=True):
                if not r.future.done():
                    r.future.set_result(out)

    @torch.no_grad()
    def _decode(self, batch: list[_Request]) -> list[TokenOutput]:
        """Sample every request of ``batch`` to its end; ``(B, T)`` left-padded, one forward pass per token.

        A request that ends (its end token or its budget) leaves the batch and its rows of the KV cache
        (``Cache.reorder_cache``, as beam search uses it), so the rest decode at the cost of what is left.
        """
        self.batches += 1
        self.requests += len(batch)
        device = next(self.model.parameters()).device
        width = max(len(r.prompt_ids) for r in batch)
        ids = torch.full((len(batch), width), self.pad_token_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, r in enumerate(batch):
            ids[i, width - len(r.prompt_ids) :] = torch.tensor(r.prompt_ids)
            mask[i, width - len(r.prompt_ids) :] = 1
        ids, mask = ids.to(device), mask.to(device)
        budgets = [int(r.params.get("max_tokens") or self.max_tokens) for r in batch]
        generators = [
            torch.Generator().manual_seed(int(r.params["seed"]))
            if r.params.get("seed") is not None
            else self._generator
            for r in batch
        ]
        temperatures = [float(r.params.get("temperature", 1.0)) for r in batch]
        tokens: list[list[int]] = [[] for _ in batch]
        logprobs: list[list[float]] = [[] for _ in batch]
        done = [b <= 0 for b in budgets]
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        filters = [(int(r.params.get("top_k", -1) or -1), float(r.params.get("top_p", 1.0))) for r in batch]
        greedy = torch.tensor([t <= 0 for t in temperatures])
        inv_t = torch.tensor([1.0 / t if t > 0 else 1.0 for t in temperatures])[:, None]
        prefill = {"input_ids": ids, "attention_mask": mask, "position_ids": positions, **self._last_logits}
        out = self.model(**prefill, use_cache=True)
        rows = list(range(len(batch)))  # the request of each row of the model's batch
        for _ in range(max(budgets)):
            index = torch.tensor(rows)
            scaled = out.logits[:, -1].float().cpu() * inv_t[index]  # (b, V)
            for j, i in enumerate(rows):
                top_k, top_p = filters[i]
                if top_k > 0 or top_p < 1.0:
                    scaled[j] = _top_k_top_p(scaled[j], top_k, top_p)
            logp = torch.log_softmax(scaled, -1)
            # One uniform per request from its own generator, then inverse-CDF sampling of the whole batch:
            # a request's tokens depend on its seed only, not on its batch-mates' draws.
            u = torch.cat([torch.rand(1, generator=generators[i], dtype=torch.float64) for i in rows])  # (b,)
            cdf = logp.double().exp().cumsum(-1)  # (b, V)
            drawn = torch.searchsorted(cdf, (u * cdf[:, -1])[:, None], right=True)[:, 0]
            step = torch.where(greedy[index], logp.argmax(-1), drawn.clamp(max=logp.shape[-1] - 1))
            step_logp = logp.gather(1, step[:, None])[:, 0]
            step_list, logp_list = step.tolist(), step_logp.tolist()
            for j, i in enumerate(rows):
                if not done[i]:
                    tokens[i].append(step_list[j])
                    logprobs[i].append(logp_list[j])
                    done[i] = step_list[j] == self.eos_token_id or len(tokens[i]) >= budgets[i]
            keep = [j for j, i in enumerate(rows) if not done[i]]
            if not keep:
                break
            cache = out.past_key_values
            if len(keep) < len(rows) and hasattr(cache, "reorder_cache"):  # finished rows leave the batch
                kept = torch.tensor(keep, device=device)
                cache.reorder_cache(kept)
                step, mask, positions = step[kept.cpu()], mask[kept], positions[kept]
                rows = [rows[j] for j in keep]
            else:
                step = step.masked_fill(torch.tensor([done[i] for i in rows]), self.pad_token_id)
            mask = torch.cat([mask, torch.ones((len(rows), 1), dtype=torch.long, device=device)], dim=1)
            positions = positions[:, -1:] + 1
            out = self.model(
                input_ids=step[:, None].to(device),
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=True,
            )
        return [
            TokenOutput(
                token_ids=t,
                log_probs=lp,
                stop_reason="completed",
                num_preempted=0,
            )
            for t, lp in zip(tokens, logprobs, strict=True)
        ]


def _top_k_top_p(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """``(V,)`` logits with everything outside the top-k / nucleus set to ``-inf`` (no-op for -1 / 1.0)."""
    if 0 < top_k < logits.numel():
        kth = logits.topk(top_k).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        order = logits.argsort(descending=True)
        probs = torch.softmax(logits[order], -1)
        drop = probs.cumsum(-1) - probs > top_p
        logits = logits.clone()
        logits[order[drop]] = float("-inf")
    return logits
