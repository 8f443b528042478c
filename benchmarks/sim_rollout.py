"""Rollout wall time of tree groups against independent ones: simulated on a GPU profile, checked on the CPU backend.

    python benchmarks/sim_rollout.py --json sim.json
    python benchmarks/sim_rollout.py --skip-cpu          # the GPU tables only (no model, about 3 minutes)

1. The CPU backend (``TransformersServer``, the demo's warmed-up tiny Qwen3, one thread) is
   calibrated by timing its decode on fixed batches (step cost against batch size, prefill per
   token) and the loop's own time per request (a server that answers at once). Times are this
   process's CPU time: with one torch thread it is a quiet machine's wall time, and it does not
   move when other jobs load the machine.
2. The demo task is sampled on it, every way side by side on each batch (independent, and the tree
   under each schedule); the simulator replays the measured responses on the calibrated profile
   and predicts each way's wall time: the check is the relative error.
3. The GPU profile (one H100, Qwen3-1.7B, vLLM; figures and sources in docs/rollout.md) runs paper
   scale (512 prompts x 8) and a latency-bound step (32 prompts x 8), long-tailed lengths to 8192.

``--json FILE`` writes ``{"gpu_paper": {"wall_ratio", "token_ratio"}, "gpu_latency": {"wall_ratio"},
"cpu_check": {"max_rel_error"}}`` (tree / independent under the loop's default schedule).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import functools
import json
import os
import statistics
import time

import torch
from bench_rollout import demo_policy, measure
from verl.workers.rollout.replica import TokenOutput

from tempo_verl.outputs import atomic_write_text
from tempo_verl.rollout.backend import TransformersServer, _Request
from tempo_verl.rollout.config import TreeRolloutConfig
from tempo_verl.rollout.local import agent_loop_factory, rollout_groups
from tempo_verl.rollout.sim import Profile, Response, lognormal_workload, replay_workload, simulate

# --- the GPU profile: one H100 SXM, Qwen3-1.7B in bf16, vLLM with verl's rollout defaults ----------
HBM_BYTES_S = 3.35e12  # H100 SXM HBM3 bandwidth (NVIDIA H100 datasheet)
BF16_FLOPS = 989e12  # H100 SXM dense BF16 tensor-core peak (NVIDIA H100 datasheet)
BANDWIDTH_EFFICIENCY = 0.77  # vLLM decode at batch 1 reaches ~77% of the HBM roofline (measured sweep, docs)
MFU = 0.5  # assumed fraction of peak FLOPs in batched decode and prefill matmuls
WEIGHT_BYTES = 2 * 1.72e9  # Qwen3-1.7B: 1.7B parameters (model card), 2 bytes each
KV_BYTES_PER_TOKEN = 2 * 28 * 8 * 128 * 2  # K and V x 28 layers x 8 KV heads x head_dim 128 x bf16 (config.json)
STEP_OVERHEAD_S = 2e-3  # assumed per-step scheduler / sampling / launch time of the engine
GPU_MEMORY = 80e9 * 0.5  # verl's rollout.gpu_memory_utilization default 0.5 of an 80 GB H100
MAX_SEQS = 256  # verl's rollout.max_num_seqs default


def gpu_profile(prefix_cache: bool = True) -> Profile:
    """Decode step = overhead + weights and every running context's KV read at the achieved bandwidth."""
    bandwidth = HBM_BYTES_S * BANDWIDTH_EFFICIENCY
    flop_s = 2 * WEIGHT_BYTES / 2 / (BF16_FLOPS * MFU)  # 2 FLOPs per parameter per token
    return Profile(
        name="H100, Qwen3-1.7B, vLLM" + ("" if prefix_cache else ", no prefix cache"),
        step_s=STEP_OVERHEAD_S + WEIGHT_BYTES / bandwidth,
        seq_s=flop_s,
        context_s=KV_BYTES_PER_TOKEN / bandwidth,
        prefill_s=flop_s,
        kv_tokens=int((GPU_MEMORY - WEIGHT_BYTES - 2e9) / KV_BYTES_PER_TOKEN),  # 2 GB activations, graphs
        max_seqs=MAX_SEQS,
        prefix_cache=prefix_cache,
    )


# --- the CPU backend, calibrated -------------------------------------------------------------------


class _Instant:
    """A server that answers at once: what remains of a rollout's time is the loop's own."""

    async def generate(self, request_id, *, prompt_ids, sampling_params, **kwargs):
        return TokenOutput(token_ids=[7, 8, 9], log_probs=[-1.0, -2.0, -0.5], stop_reason="completed")


def calibrate_cpu(task, tokenizer, model, group: int, prompts: int) -> Profile:
    """Fit the static-batch profile of ``TransformersServer`` from timed decodes of fixed batches."""
    text = task.prompt_text(task.sample_prompts(1, torch.Generator().manual_seed(5))[0])

    async def loop_only():
        make_loop = agent_loop_factory(_Instant(), tokenizer, group, 64, 16, {"roots": group})
        uids = [f"c{i}" for i in range(prompts)]
        return await rollout_groups(make_loop, [text] * prompts, uids, group, {"temperature": 1.0, "logprobs": True})

    prompt = list(asyncio.run(loop_only())[0][0].prompt_ids)  # the loop's own prompt ids (and its first calls)
    start = time.process_time()
    asyncio.run(loop_only())
    request_s = (time.process_time() - start) / (group * prompts)
    server = TransformersServer(model, eos_token_id=-1, pad_token_id=tokenizer.pad_token_id, max_tokens=16)

    def timed(rows: int, tokens: int) -> float:
        best = float("inf")
        for _ in range(3):
            start = time.process_time()
            server._decode([_Request(prompt, {"max_tokens": tokens, "seed": 1}, None) for _ in range(rows)])
            best = min(best, time.process_time() - start)
        return best

    sizes = (8, 32, 128)
    once = {b: timed(b, 1) for b in sizes}
    per_step = {b: (timed(b, 9) - once[b]) / 8 for b in sizes}
    mean_b, mean_t = statistics.fmean(sizes), statistics.fmean(per_step.values())
    seq_s = sum((b - mean_b) * (per_step[b] - mean_t) for b in sizes) / sum((b - mean_b) ** 2 for b in sizes)
    step_s = mean_t - seq_s * mean_b
    prefill_s = statistics.fmean(max(0.0, once[b] - step_s - seq_s * b) / (b * len(prompt)) for b in sizes)
    return Profile(
        name="CPU backend (demo model, calibrated)",
        step_s=step_s,
        seq_s=seq_s,
        context_s=0.0,
        prefill_s=prefill_s,
        kv_tokens=1 << 40,
        max_seqs=1 << 30,
        prefix_cache=False,
        continuous=False,
        request_s=request_s,
    )


# --- the tables ------------------------------------------------------------------------------------


def _ways(group: int, roots: int, segment: int) -> dict[str, dict]:
    return {
        "independent": {"roots": group},
        "tree, rounds": {"roots": roots, "schedule": "rounds"},
        "tree, eager": {"roots": roots, "schedule": "eager"},
        f"tree, segments of {segment}": {"roots": roots, "schedule": "segments", "segment_tokens": segment},
    }


def _simulate(workload_of, profile: Profile, tree: dict, length: int):
    knobs = TreeRolloutConfig(**{k: v for k, v in tree.items() if k != "roots"})
    return simulate(
        workload_of(),
        profile,
        tree["roots"],
        knobs.schedule,
        knobs.rounds,
        knobs.rule,
        knobs.segment_length(length),
    )


def _replays(m) -> list:
    """Per measured batch, a workload factory replaying its responses (``[group][session]``)."""
    out = []
    for batch in m.batches:
        groups = [[Response(ids, lps) for ids, lps in zip(m.groups[g], m.logprobs[g], strict=True)] for g in batch]
        out.append(functools.partial(replay_workload, [m.prompts[g] for g in batch], groups, 16))
    return out


def cpu_check(args) -> tuple[float, dict]:
    """Measure every way on the CPU backend side by side, simulate each from its responses; the table and errors."""
    task, tokenizer, model = demo_policy(args.warmup_steps)
    profile = calibrate_cpu(task, tokenizer, model, args.group, args.prompts)
    print(f"{profile.name}: step {1e3 * profile.step_s:.2f} ms + {1e3 * profile.seq_s:.3f} ms per row, ", end="")
    print(f"prefill {1e6 * profile.prefill_s:.1f} us per token, loop {1e3 * profile.request_s:.2f} ms per request")
    ways = _ways(args.group, args.roots, 4)
    measured = measure(task, tokenizer, model, ways, args.group, args.prompts, args.batches)
    rows, errors = {}, []
    for name, tree in ways.items():
        m = measured[name]
        predicted = [_simulate(replay, profile, tree, 16).wall_s for replay in _replays(m)]
        wall, sim = statistics.fmean(m.cpu), statistics.fmean(predicted)
        errors.append(abs(sim - wall) / wall)
        rows[name] = (wall, sim, statistics.fmean(m.gen))
    base = rows["independent"]
    print(f"\nCPU backend, demo task, G={args.group}, {args.roots} roots, {args.batches} x {args.prompts} prompts")
    print("measured: this process's CPU time per batch (one thread: a quiet machine's wall time)")
    print(f"{'':28s} {'measured s':>10s} {'ratio':>6s} {'simulated s':>11s} {'ratio':>6s} {'error':>6s} {'tokens':>7s}")
    for (name, (wall, sim, gen)), err in zip(rows.items(), errors, strict=True):
        print(f"{name:28s} {wall:10.2f} {wall / base[0]:6.3f} {sim:11.2f} {sim / base[1]:6.3f} {err:6.1%} ", end="")
        print(f"{gen / base[2]:7.3f}")
    segments = next(name for name in ways if "segments" in name)
    free = dataclasses.replace(profile, prefill_s=0.0)
    ideal = statistics.fmean(_simulate(r, free, ways[segments], 16).wall_s for r in _replays(measured[segments]))
    print(f"{segments} with a free prefill (an ideal prefix cache on this backend): {ideal:.2f} s simulated ", end="")
    print(f"({ideal / rows[segments][1]:.3f}x of {rows[segments][1]:.2f} s)")
    return max(errors), rows


def gpu_tables(args) -> dict:
    """Every schedule on the GPU profile, paper scale and latency-bound; the default schedule's ratios."""
    default = TreeRolloutConfig()
    out = {}
    for key, groups in (("gpu_paper", args.paper_prompts), ("gpu_latency", args.latency_prompts)):
        length = 8192
        results = {}
        for profile in (gpu_profile(),) if key == "gpu_paper" else (gpu_profile(), gpu_profile(False)):
            for name, tree in _ways(args.group, args.roots, 1024).items():
                workload = functools.partial(
                    lognormal_workload, groups, args.group, 256, length, args.median, args.sigma, seed=1
                )
                start = time.perf_counter()
                r = _simulate(workload, profile, tree, length)
                results[(profile.name, name)] = r
                if args.verbose:
                    print(f"  ({name}: {time.perf_counter() - start:.0f} s to simulate)")
        print(
            f"\n{key}: {groups} prompts x {args.group}, {args.roots} roots, lengths min(8192, lognormal(median ", end=""
        )
        print(f"{args.median:g}, sigma {args.sigma:g})), prompt 256 tokens")
        print(f"{'profile':38s} {'way':24s} {'wall s':>8s} {'ratio':>6s} {'tokens':>7s} {'preempted':>9s}")
        for (pname, name), r in results.items():
            base = results[(pname, "independent")]
            print(f"{pname:38s} {name:24s} {r.wall_s:8.1f} {r.wall_s / base.wall_s:6.3f} ", end="")
            print(f"{r.generated_tokens / base.generated_tokens:7.3f} {r.preemptions:9d}")
        ways = _ways(args.group, args.roots, 1024)
        fresh = {
            name: _simulate(
                functools.partial(lognormal_workload, groups, args.group, 256, 8192, args.median, args.sigma, None, 1),
                gpu_profile(),
                tree,
                8192,
            )
            for name, tree in ways.items()
            if name == "independent" or name.startswith(f"tree, {default.schedule}")
        }
        (a, b) = fresh.values()
        print(
            "  assumption check, branch lengths drawn afresh (no memory of the parent): tree / independent wall ",
            end="",
        )
        print(f"{b.wall_s / a.wall_s:.3f}, tokens {b.generated_tokens / a.generated_tokens:.3f} ({default.schedule})")
        base = results[(gpu_profile().name, "independent")]
        chosen = next(
            r
            for (p, name), r in results.items()
            if p == gpu_profile().name and name.startswith(f"tree, {default.schedule}")
        )
        out[key] = {
            "wall_ratio": chosen.wall_s / base.wall_s,
            "token_ratio": chosen.generated_tokens / base.generated_tokens,
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--roots", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=16, help="CPU check: prompts per batch")
    parser.add_argument("--batches", type=int, default=4, help="CPU check: batches")
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--paper-prompts", type=int, default=512)
    parser.add_argument("--latency-prompts", type=int, default=32)
    parser.add_argument("--median", type=float, default=1500.0, help="GPU: median response length")
    parser.add_argument("--sigma", type=float, default=0.9, help="GPU: lognormal sigma of response lengths")
    parser.add_argument("--skip-cpu", action="store_true", help="the GPU tables only")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}; the loop's default schedule: {TreeRolloutConfig().schedule}")
    error = None if args.skip_cpu else cpu_check(args)[0]  # first: the measurements in a fresh process
    summary = gpu_tables(args)
    summary["gpu_latency"] = {"wall_ratio": summary["gpu_latency"]["wall_ratio"]}
    if error is not None:
        summary["cpu_check"] = {"max_rel_error": error}
        print(f"\nsimulator against the CPU backend: largest relative error {error:.1%} (target <= 20%)")
    print(json.dumps(summary))
    if args.json:
        atomic_write_text(args.json, json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
