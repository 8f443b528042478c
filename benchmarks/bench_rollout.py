"""Tree rollouts (``tempo_tree``) against independent sampling on the demo's task, through the same loop and backend.

    python benchmarks/bench_rollout.py                 # G=8, 2 roots, 16 prompts x 8 batches
    python benchmarks/bench_rollout.py --roots 2 --rounds 2 --batches 4

The policy is the demo's warmed-up tiny Qwen3 (format known, labels guessed). Every batch is sampled
both ways, side by side, from the same weights. Printed:
- generated tokens per group (a branch's prefix is its parent's, not generated again), tree / independent;
- responses passing through a response's prefix before each decision token (the digit labels), the
  mean over responses (1 = it has left its group already), tree against independent;
- coordination overhead: time in the loop's own code (registry, planning, bookkeeping: the
  ``tempo_tree`` session time minus the server and the waits) over the rollout's wall time;
- wall time per batch both ways (a tree waits for its roots: two decode phases, not one).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import torch

from tempo_verl.demo.model import ModelSize, build_model, build_tokenizer, warm_up
from tempo_verl.demo.task import ParityTask
from tempo_verl.rollout import group as tree_group
from tempo_verl.rollout.backend import TransformersServer
from tempo_verl.rollout.local import agent_loop_factory, rollout_groups
from tempo_verl.rollout.loop import TreeClient


class _Timed(TransformersServer):
    """The backend, counting the time sessions spend awaiting it."""

    waited = 0.0

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        start = time.perf_counter()
        try:
            return await super().generate(request_id, prompt_ids=prompt_ids, sampling_params=sampling_params, **kwargs)
        finally:
            _Timed.waited += time.perf_counter() - start


def _instrument() -> dict[str, float]:
    """Time spent in TreeClient.generate and in the registry context (joined), per call."""
    spent = {"client": 0.0, "joined": 0.0}
    original_generate, original_joined = TreeClient.generate, tree_group.joined

    async def generate(self, *args, **kwargs):
        start = time.perf_counter()
        try:
            return await original_generate(self, *args, **kwargs)
        finally:
            spent["client"] += time.perf_counter() - start

    class _Joined:
        def __init__(self, *args):
            self.inner = original_joined(*args)

        def __enter__(self):
            start = time.perf_counter()
            out = self.inner.__enter__()
            spent["joined"] += time.perf_counter() - start
            return out

        def __exit__(self, *exc):
            start = time.perf_counter()
            out = self.inner.__exit__(*exc)
            spent["joined"] += time.perf_counter() - start
            return out

    TreeClient.generate = generate
    import tempo_verl.rollout.loop as loop_module

    loop_module.joined = _Joined
    return spent


def _sharing(groups: list[list[list[int]]], positions: list[int]) -> list[float]:
    """Mean over responses of how many responses of its group share its prefix before each position."""
    out = []
    for d in positions:
        counts = [sum(other[:d] == mine[:d] for other in g) for g in groups for mine in g if len(mine) > d]
        out.append(statistics.fmean(counts))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--roots", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rule", default="surprisal")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    task = ParityTask(num_digits=3)
    tokenizer = build_tokenizer(task)
    model = build_model(tokenizer, ModelSize(), seed=1234)
    warm_up(model, tokenizer, task, args.warmup_steps, 64, 3e-3, 1234, torch.device("cpu"))
    model.eval()
    spent = _instrument()
    decisions = [3 * i + 1 for i in range(task.num_digits)]  # the label after each echoed digit
    rng = torch.Generator().manual_seed(0)
    G = args.group
    results: dict[str, dict[str, list]] = {k: {"gen": [], "groups": [], "wall": []} for k in ("independent", "tree")}
    overhead, tree_wall = 0.0, 0.0
    for b in range(args.batches):
        texts = [task.prompt_text(d) for d in task.sample_prompts(args.prompts, rng)]
        for kind, tree in (
            ("independent", {"roots": G}),
            ("tree", {"roots": args.roots, "rounds": args.rounds, "rule": args.rule}),
        ):
            server = _Timed(model, tokenizer.eos_token_id, tokenizer.pad_token_id, 16)
            params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True, "seed": 1000 + b}

            async def rollout(tree=tree, server=server, texts=texts, params=params, b=b):
                make_loop = agent_loop_factory(server, tokenizer, G, 64, 16, tree)
                return await rollout_groups(make_loop, texts, [f"{b}-{i}" for i in range(len(texts))], G, params)

            before = dict(spent)
            _Timed.waited = 0.0
            start = time.perf_counter()
            groups = asyncio.run(rollout())
            wall = time.perf_counter() - start
            stats = [o.extra_fields["tempo_tree"] for g in groups for o in g]
            gen = sum(s["generated_tokens"] for s in stats) / len(groups)
            results[kind]["gen"].append(gen)
            results[kind]["groups"] += [[list(o.response_ids) for o in g] for g in groups]
            results[kind]["wall"].append(wall)
            if kind == "tree":
                waits = sum(s["wait_s"] for s in stats)
                own = (spent["client"] - before["client"]) - _Timed.waited - waits
                overhead += own + (spent["joined"] - before["joined"])
                tree_wall += wall
    ind, tree = results["independent"], results["tree"]
    gen_ind, gen_tree = statistics.fmean(ind["gen"]), statistics.fmean(tree["gen"])
    ratio = gen_tree / gen_ind
    share = overhead / tree_wall
    print(f"demo task, G={G}, roots={args.roots}, rounds={args.rounds}, rule={args.rule}, ", end="")
    print(f"{args.batches} batches x {args.prompts} prompts")
    print(f"generated tokens per group: independent {gen_ind:.1f}, tree {gen_tree:.1f}", end="")
    print(f"  -> tree / independent = {ratio:.3f}  (target <= 0.75: {'met' if ratio <= 0.75 else 'not met'})")
    si, st = _sharing(ind["groups"], decisions), _sharing(tree["groups"], decisions)
    for k, (a, b) in enumerate(zip(si, st, strict=True)):
        print(f"responses through the prefix before decision {k + 1} (token {decisions[k]}): ", end="")
        print(f"independent {a:.2f}, tree {b:.2f} ({b / a:.2f}x)")
    print(f"coordination overhead: {1000 * overhead:.1f} ms of {tree_wall:.2f} s tree rollout wall time ", end="")
    print(f"= {100 * share:.2f}%  (target <= 5%: {'met' if share <= 0.05 else 'not met'})")
    wall_ind, wall_tree = statistics.fmean(ind["wall"]), statistics.fmean(tree["wall"])
    print(f"wall time per batch: independent {wall_ind:.2f} s, tree {wall_tree:.2f} s")


if __name__ == "__main__":
    main()
