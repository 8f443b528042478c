"""The CPU backend: a request's tokens are its own (seed, budget, sampling), finished rows leave the batch,
and the sampler draws from the policy's distribution."""

from __future__ import annotations

import asyncio

import torch

from tempo_verl.rollout.backend import TransformersServer

PROMPT = [3, 4, 5]


def _requests() -> list[dict]:
    return [
        {"seed": 1, "temperature": 1.0, "max_tokens": 12},
        {"seed": 2, "temperature": 1.0, "max_tokens": 2},
        {"seed": 3, "temperature": 0.0, "max_tokens": 6},  # greedy
        {"seed": 4, "temperature": 0.7, "top_k": 3, "max_tokens": 9},
        {"seed": 5, "temperature": 1.0, "top_p": 0.5, "max_tokens": 12},
        {"seed": 6, "temperature": 1.0, "max_tokens": 1},
    ]


def _prompt(i: int) -> list[int]:
    return PROMPT[: 1 + i % 3]  # three lengths: the batch is left-padded


async def _generate(server: TransformersServer, params: list[dict], prompts: list[list[int]] | None = None) -> list:
    prompts = prompts or [_prompt(i) for i in range(len(params))]
    return await asyncio.gather(
        *(
            server.generate(f"r{i}", prompt_ids=q, sampling_params=p)
            for i, (q, p) in enumerate(zip(prompts, params, strict=True))
        )
    )


def test_a_request_samples_the_same_alone_or_in_a_batch_and_finished_rows_leave(policy) -> None:
    tokenizer, model = policy
    widths: list[int] = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: widths.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        server = TransformersServer(model, tokenizer.eos_token_id, tokenizer.pad_token_id, 16)
        together = asyncio.run(_generate(server, _requests()))
        batch_widths = list(widths)
        alone = [asyncio.run(_generate(server, [p], [_prompt(i)]))[0] for i, p in enumerate(_requests())]
    finally:
        hook.remove()
    assert server.batches == 1 + len(_requests())
    for req, a, b in zip(_requests(), together, alone, strict=True):
        assert a.token_ids == b.token_ids
        assert torch.allclose(torch.tensor(a.log_probs), torch.tensor(b.log_probs), atol=1e-5)
        assert len(a.token_ids) <= req["max_tokens"]
        assert len(a.log_probs) == len(a.token_ids)
    # the batch shrinks as requests end: the 1-token request is gone from step 2 on
    assert batch_widths[0] == len(_requests()) and batch_widths[-1] < batch_widths[0]
    assert batch_widths == sorted(batch_widths, reverse=True)


def test_the_sampler_draws_from_the_policy(policy) -> None:
    tokenizer, model = policy
    server = TransformersServer(model, tokenizer.eos_token_id, tokenizer.pad_token_id, 1)
    draws = 3000
    outs = asyncio.run(_generate(server, [{"seed": s, "temperature": 1.0, "max_tokens": 1} for s in range(draws)]))
    with torch.no_grad():  # the first token's distribution, for each of the three prompt lengths
        for k in range(3):
            probs = torch.softmax(model(input_ids=torch.tensor([_prompt(k)])).logits[0, -1].float(), -1)
            seen = torch.bincount(
                torch.tensor([o.token_ids[0] for i, o in enumerate(outs) if i % 3 == k]), minlength=probs.numel()
            )
            n = int(seen.sum())
            sd = (probs * (1 - probs) / n).sqrt()
            assert ((seen / n - probs).abs() <= 5 * sd + 1e-3).all()
            logp = {o.token_ids[0]: o.log_probs[0] for i, o in enumerate(outs) if i % 3 == k}
            for token, lp in logp.items():
                assert abs(lp - float(probs[token].log())) < 1e-4
