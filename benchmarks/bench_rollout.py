"""Tree rollouts (``tempo_tree``) against independent sampling on the demo's task, through the same loop and backend.

    python benchmarks/bench_rollout.py                 # G=8, 2 roots, 16 prompts x 8 batches
    python benchmarks/bench_rollout.py --roots 2 --rounds 2 --batches 4
    python benchmarks/bench_rollout.py --schedule segments --segment-tokens 4 --json rollout.json

The policy is the demo's warmed-up tiny Qwen3 (format known, labels guessed). Every batch is sampled
both ways, side by side, from the same weights. Printed:
- generated tokens per group (a branch's prefix is its parent's, not generated again), tree / independent;
- responses passing through a response's prefix before each decision token (the digit labels), the
  mean over responses (1 = it has left its group already), tree against independent;
- coordination overhead: time in the loop's own code (registry, planning, bookkeeping: the
  ``tempo_tree`` session time minus the server and the waits) over the rollout's wall time;
- wall time per batch both ways, measured side by side (independent, then tree, on each batch)
  and their ratio; ``--json FILE`` writes ``{"wall_ratio", "token_ratio"}`` (tree / independent).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import statistics
import time
from dataclasses import dataclass, field

import torch

from tempo_verl.demo.model import ModelSize, build_model, build_tokenizer, warm_up
from tempo_verl.demo.task import ParityTask
from tempo_verl.outputs import atomic_write_text
from tempo_verl.rollout import STATS_KEY
from tempo_verl.rollout import group as tree_group
from tempo_verl.rollout.backend import TransformersServer
from tempo_verl.rollout.local import agent_loop_factory, rollout_groups
from tempo_verl.rollout.loop import TreeClient
from tempo_verl.rollout.plan import SCHEDULES


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


@dataclass
class Measured:
    """One way of sampling, over every batch: wall time, generated tokens, and the responses."""

    wall: list[float] = field(default_factory=list)  # (batches,) seconds
    cpu: list[float] = field(default_factory=list)  # (batches,) this process's CPU seconds (load-proof)
    gen: list[float] = field(default_factory=list)  # (batches,) generated tokens per group
    groups: list[list[list[int]]] = field(default_factory=list)  # [group][session] response ids
    logprobs: list[list[list[float]]] = field(default_factory=list)  # [group][session] their logprobs
    prompts: list[int] = field(default_factory=list)  # prompt tokens per group
    overhead: float = 0.0  # seconds in the loop's own code
    batches: list[list[int]] = field(default_factory=list)  # group indices of each batch


def demo_policy(warmup_steps: int):
    """The demo's task, tokenizer and warmed-up tiny Qwen3 (one thread: the CPU backend as the demo runs it)."""
    torch.set_num_threads(1)
    task = ParityTask(num_digits=3)
    tokenizer = build_tokenizer(task)
    model = build_model(tokenizer, ModelSize(), seed=1234)
    warm_up(model, tokenizer, task, warmup_steps, 64, 3e-3, 1234, torch.device("cpu"))
    return task, tokenizer, model.eval()


def measure(task, tokenizer, model, ways: dict[str, dict], group: int, prompts: int, batches: int, length: int = 16):
    """Sample every batch each way in turn (``ways``: name -> ``custom.tree``), side by side from the same weights."""
    spent = _instrument()
    rng, spare = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
    results = {name: Measured() for name in ways}
    for b in range(-1, batches):  # batch -1 warms every way up (first calls, allocations); not counted
        texts = [task.prompt_text(d) for d in task.sample_prompts(prompts, spare if b < 0 else rng)]
        for name, tree in ways.items():
            server = _Timed(model, tokenizer.eos_token_id, tokenizer.pad_token_id, length)
            params = {"temperature": 1.0, "top_p": 1.0, "top_k": -1, "logprobs": True, "seed": 1000 + b}

            async def rollout(tree=tree, server=server, texts=texts, params=params, b=b):
                make_loop = agent_loop_factory(server, tokenizer, group, 64, length, tree)
                return await rollout_groups(make_loop, texts, [f"{b}-{i}" for i in range(len(texts))], group, params)

            before = dict(spent)
            _Timed.waited = 0.0
            gc.collect()  # the previous way's garbage is not this way's time
            start, start_cpu = time.perf_counter(), time.process_time()
            groups = asyncio.run(rollout())
            wall, cpu = time.perf_counter() - start, time.process_time() - start_cpu
            if b < 0:
                continue
            stats = [o.extra_fields[STATS_KEY] for g in groups for o in g]
            r = results[name]
            r.wall.append(wall)
            r.cpu.append(cpu)
            r.gen.append(sum(s["generated_tokens"] for s in stats) / len(groups))
            r.batches.append(list(range(len(r.groups), len(r.groups) + len(groups))))
            r.groups += [[list(o.response_ids) for o in g] for g in groups]
            r.logprobs += [[list(o.response_logprobs) for o in g] for g in groups]
            r.prompts += [len(g[0].prompt_ids) for g in groups]
            waits = sum(s["wait_s"] for s in stats)
            r.overhead += (spent["client"] - before["client"]) - _Timed.waited - waits
            r.overhead += spent["joined"] - before["joined"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--roots", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--rule", default="surprisal")
    parser.add_argument("--schedule", default="rounds", choices=SCHEDULES)
    parser.add_argument("--segment-tokens", type=int, default=None)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batches", type=int, default=8)
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--json", default=None, help="write {wall_ratio, token_ratio} (tree / independent) here")
    args = parser.parse_args()
    task, tokenizer, model = demo_policy(args.warmup_steps)
    G = args.group
    tree_knobs = {"roots": args.roots, "rounds": args.rounds, "rule": args.rule, "schedule": args.schedule}
    if args.segment_tokens is not None:
        tree_knobs["segment_tokens"] = args.segment_tokens
    results = measure(
        task, tokenizer, model, {"independent": {"roots": G}, "tree": tree_knobs}, G, args.prompts, args.batches
    )
    ind, tree = results["independent"], results["tree"]
    decisions = [3 * i + 1 for i in range(task.num_digits)]  # the label after each echoed digit
    gen_ind, gen_tree = statistics.fmean(ind.gen), statistics.fmean(tree.gen)
    ratio = gen_tree / gen_ind
    share = tree.overhead / sum(tree.wall)
    print(f"demo task, G={G}, roots={args.roots}, rounds={args.rounds}, rule={args.rule}, ", end="")
    print(f"schedule={args.schedule}, {args.batches} batches x {args.prompts} prompts; uptime: {os.getloadavg()}")
    print(f"generated tokens per group: independent {gen_ind:.1f}, tree {gen_tree:.1f}", end="")
    print(f"  -> tree / independent = {ratio:.3f}  (target <= 0.75: {'met' if ratio <= 0.75 else 'not met'})")
    si, st = _sharing(ind.groups, decisions), _sharing(tree.groups, decisions)
    for k, (a, b) in enumerate(zip(si, st, strict=True)):
        print(f"responses through the prefix before decision {k + 1} (token {decisions[k]}): ", end="")
        print(f"independent {a:.2f}, tree {b:.2f} ({b / a:.2f}x)")
    print(
        f"coordination overhead: {1000 * tree.overhead:.1f} ms of {sum(tree.wall):.2f} s tree rollout wall time ",
        end="",
    )
    print(f"= {100 * share:.2f}%  (target <= 5%: {'met' if share <= 0.05 else 'not met'})")
    wall_ind, wall_tree = statistics.fmean(ind.wall), statistics.fmean(tree.wall)
    wall_ratio = wall_tree / wall_ind
    cpu_ind, cpu_tree = statistics.fmean(ind.cpu), statistics.fmean(tree.cpu)
    cpu_ratio = cpu_tree / cpu_ind
    print(f"wall time per batch: independent {wall_ind:.2f} s, tree {wall_tree:.2f} s -> tree / independent = ", end="")
    print(f"{wall_ratio:.3f}  (target <= 0.9: {'met' if wall_ratio <= 0.9 else 'not met'})")
    print(f"CPU time per batch (the wall time of a quiet machine: one thread): independent {cpu_ind:.2f} s, ", end="")
    print(f"tree {cpu_tree:.2f} s -> {cpu_ratio:.3f}  (target <= 0.9: {'met' if cpu_ratio <= 0.9 else 'not met'})")
    if args.json:
        atomic_write_text(
            args.json,
            json.dumps(
                {"wall_ratio": wall_ratio, "cpu_time_ratio": cpu_ratio, "token_ratio": ratio, "sharing": st}, indent=1
            ),
        )


if __name__ == "__main__":
    main()
