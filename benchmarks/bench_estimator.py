"""TEMPO estimator speed and memory, side by side with verl 0.9.1's own estimators (through its registry).

    python benchmarks/bench_estimator.py            # every figure (about 4-5 minutes on 2 cores)
    python benchmarks/bench_estimator.py --quick    # fewer repeats, for a smoke run

Figures (the targets of the estimator issues):
1. paper scale, 512 prompts x 7 responses x 8192 tokens, int64 masks (what verl passes): TEMPO <= 0.8x verl
   `grpo`, <= 1.2x `grpo_vectorized`; the same with float32 masks (a library user's call): <= 1.5x;
2. deep and wide, 64 x 16 x 8192 with ~2000-token shared prefixes: TEMPO <= 3x `grpo_vectorized`;
3. against the per-token Python trie reference (tests/core/trie_reference.py) on 512x1024 realistic and
   128x1024 with ~600-token shared prefixes: >= 1000x faster;
4. peak extra memory of one call at paper scale, each in a fresh process: TEMPO <= 1.2x `grpo_vectorized`
   with int64 masks, <= 1.5x with float32 masks;
5. scale: one group of 8192 responses x 2048 tokens (a constant uid) in a fresh process: < 2 s and < 1 GiB
   extra; 64 groups x 64 responses x 4096 tokens: <= 3x `grpo_vectorized`.
6. under load: figure 1 (int64) again with one busy-loop process per core running beside it (a busy trainer
   node), with 2 torch threads and with 1: TEMPO / `grpo_vectorized` should stay near the quiet ratio.
All timings: 2 torch threads, the minimum of several repeats (one call for the single group).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "core"))

VOCAB = 151_000  # Qwen-sized vocabulary: random tokens almost never coincide by chance


def make_batch(
    prompts: int,
    group: int,
    width: int,
    prefix_mean: float,
    seed: int = 0,
    min_frac: float = 0.25,
    mask_dtype: torch.dtype = torch.long,
):
    """Synthetic rollouts: each response copies a geometric-length prefix of its group's base sequence.

    Returns ``(token_level_rewards, response_mask, attention, index, responses)``; masks are ``mask_dtype``
    (int64 as verl holds them), lengths uniform in ``[min_frac * width, width]``, scores 0/1 on the last
    valid token.
    """
    gen = torch.Generator().manual_seed(seed)
    bs = prompts * group
    base = torch.randint(0, VOCAB, (prompts, width), generator=gen)
    responses = torch.randint(0, VOCAB, (bs, width), generator=gen)
    p = 1.0 / (prefix_mean + 1.0)
    shared = torch.distributions.Geometric(probs=torch.tensor(p)).sample((bs,)).long()
    shared = shared.clamp(max=width)
    pos = torch.arange(width)
    copy = pos[None, :] < shared[:, None]
    row_group = torch.arange(bs) // group
    responses = torch.where(copy, base[row_group], responses)
    lengths = torch.randint(int(min_frac * width), width + 1, (bs,), generator=gen)
    attention = (pos[None, :] < lengths[:, None]).long()
    responses = responses * attention  # pad id 0
    rewards = torch.zeros(bs, width)
    rewards[torch.arange(bs), lengths - 1] = torch.randint(0, 2, (bs,), generator=gen).float()
    index = np.array([f"uid-{g}" for g in row_group.tolist()], dtype=object)
    mask = attention.to(mask_dtype)
    return rewards, mask, mask.clone(), index, responses


def best_time(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def estimators():
    from verl.trainer.ppo import core_algos

    import tempo_verl  # noqa: F401  (registers `tempo`)

    return {name: core_algos.get_adv_estimator_fn(name) for name in ("tempo", "grpo", "grpo_vectorized")}


def call(name: str, fns, batch):
    rewards, mask, attention, index, responses = batch
    if name == "tempo":
        return fns[name](rewards, mask, index=index, responses=responses, response_attention_mask=attention)
    return fns[name](rewards, mask, index)


def speed(label: str, batch, repeats: int, names=("tempo", "grpo", "grpo_vectorized")) -> dict[str, float]:
    fns = estimators()
    times = {name: best_time(lambda n=name: call(n, fns, batch), repeats) for name in names}
    print(f"\n[{label}]")
    for name, t in times.items():
        print(f"  {name:<16} {t * 1e3:9.1f} ms")
    return times


def reference_ratio(label: str, batch, repeats: int) -> float:
    from trie_reference import reference_tempo_advantage

    from tempo_verl import compute_tempo_advantage

    rewards, mask, attention, index, responses = batch
    lengths = attention.sum(-1).tolist()
    start = time.perf_counter()
    slow = reference_tempo_advantage(rewards, mask, index, responses, lengths)
    t_ref = time.perf_counter() - start
    fast = compute_tempo_advantage(rewards, mask, index, responses, response_attention_mask=attention)[0]
    assert torch.allclose(fast.double(), slow, atol=1e-5), "vectorized and reference disagree"
    t_vec = best_time(
        lambda: compute_tempo_advantage(rewards, mask, index, responses, response_attention_mask=attention), repeats
    )
    ratio = t_ref / t_vec
    print(f"\n[{label}]\n  python trie ref  {t_ref * 1e3:9.1f} ms\n  tempo            {t_vec * 1e3:9.1f} ms")
    print(f"  speed-up         {ratio:9.0f}x   (target >= 1000x)")
    return ratio


def _busy(stop) -> None:
    while not stop.is_set():
        pass


def loaded_speed(batch, repeats: int) -> dict[int, dict[str, float]]:
    """Figure 1 with one busy-loop process per core beside it, at 2 torch threads and at 1."""
    stop = multiprocessing.Event()
    load = [multiprocessing.Process(target=_busy, args=(stop,), daemon=True) for _ in range(os.cpu_count() or 1)]
    for proc in load:
        proc.start()
    try:
        out = {}
        for threads in (2, 1):
            torch.set_num_threads(threads)
            out[threads] = speed(
                f"6. paper scale, int64 masks, one busy process per core, {threads} torch thread(s)",
                batch,
                repeats,
                names=("tempo", "grpo_vectorized"),
            )
    finally:
        torch.set_num_threads(2)
        stop.set()
        for proc in load:
            proc.join()
    return out


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


CASES = {
    "paper-int64": lambda: make_batch(512, 7, 8192, 30.0),
    "paper-float32": lambda: make_batch(512, 7, 8192, 30.0, mask_dtype=torch.float32),
    "one-group": lambda: make_batch(1, 8192, 2048, 30.0),
}


def peak_extra_memory_child(name: str, case: str) -> None:
    """Runs in a fresh process: seconds and peak RSS above the inputs of one call, sampled every 0.2 ms."""
    torch.set_num_threads(2)
    fns = estimators()
    batch = CASES[case]()
    call(name, fns, make_batch(2, 3, 16, 2.0, mask_dtype=batch[1].dtype))  # warm up the code paths
    import gc

    gc.collect()
    before = _rss_bytes()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.0002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    out = call(name, fns, batch)
    seconds = time.perf_counter() - start
    peak[0] = max(peak[0], _rss_bytes())
    done.set()
    sampler.join()
    del out
    print(json.dumps({"name": name, "extra_mb": (peak[0] - before) / 2**20, "seconds": seconds}))


def child_run(name: str, case: str) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--memory-child", name, case], capture_output=True, text=True, check=True
    )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def peak_extra_memory() -> dict[str, dict[str, float]]:
    out = {case: {name: child_run(name, case)["extra_mb"] for name in ("grpo_vectorized", "tempo")} for case in CASES}
    print("\n[4. peak extra memory of one call, fresh process each]")
    for case in ("paper-int64", "paper-float32"):
        for name, mb in out[case].items():
            print(f"  {case:<14} {name:<16} {mb:9.1f} MiB")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--memory-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        peak_extra_memory_child(*args.memory_child)
        return
    torch.set_num_threads(2)
    repeats = 2 if args.quick else 5
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, min of {repeats} repeats")
    print(f"load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (figure 6 adds its own load)")

    paper_batch = make_batch(512, 7, 8192, 30.0)
    paper = speed(
        "1. paper scale: 512 x 7 x 8192, shared prefix ~ Geometric(mean 30), int64 masks", paper_batch, repeats
    )
    loaded = loaded_speed(paper_batch, repeats)
    del paper_batch
    paper_f32 = speed(
        "1f. paper scale, float32 masks",
        make_batch(512, 7, 8192, 30.0, mask_dtype=torch.float32),
        repeats,
        names=("tempo", "grpo_vectorized"),
    )
    deep = speed(
        "2. deep and wide: 64 x 16 x 8192, shared prefix ~ Geometric(mean 2000)",
        make_batch(64, 16, 8192, 2000.0, min_frac=0.3),
        repeats,
        names=("tempo", "grpo_vectorized"),
    )
    r1 = reference_ratio(
        "3a. vs per-token Python: 512 x 1024 realistic (64 x 8)", make_batch(64, 8, 1024, 30.0), repeats
    )
    r2 = reference_ratio(
        "3b. vs per-token Python: 128 x 1024, ~600-token shared prefixes (16 x 8)",
        make_batch(16, 8, 1024, 600.0),
        repeats,
    )
    mem = peak_extra_memory()
    wide = speed(
        "5b. wide groups: 64 groups x 64 x 4096, shared prefix ~ Geometric(mean 30)",
        make_batch(64, 64, 4096, 30.0),
        repeats,
        names=("tempo", "grpo_vectorized"),
    )
    one = child_run("tempo", "one-group")
    print(f"\n[5a. one group of 8192 x 2048 (a constant uid), fresh process]\n  tempo {one['seconds']:9.2f} s")

    m_int, m_f32 = mem["paper-int64"], mem["paper-float32"]
    print("\nsummary (measured / target)")
    print(f"  1. tempo / grpo                    {paper['tempo'] / paper['grpo']:6.2f}x   (<= 0.8x)")
    print(f"  1. tempo / grpo_vectorized, int64  {paper['tempo'] / paper['grpo_vectorized']:6.2f}x   (<= 1.2x)")
    print(f"  1. tempo / grpo_vectorized, f32    {paper_f32['tempo'] / paper_f32['grpo_vectorized']:6.2f}x   (<= 1.5x)")
    print(f"  2. tempo / grpo_vectorized         {deep['tempo'] / deep['grpo_vectorized']:6.2f}x   (<= 3x)")
    print(f"  3. python ref / tempo              {r1:6.0f}x, {r2:.0f}x   (>= 1000x)")
    print(f"  4. extra memory ratio, int64       {m_int['tempo'] / m_int['grpo_vectorized']:6.2f}x   (<= 1.2x)")
    print(f"  4. extra memory ratio, f32         {m_f32['tempo'] / m_f32['grpo_vectorized']:6.2f}x   (<= 1.5x)")
    print(f"  5a. one group of 8192: time        {one['seconds']:6.2f} s   (< 2 s)")
    print(f"  5a. one group of 8192: memory      {one['extra_mb']:6.0f} MiB (< 1024 MiB)")
    print(f"  5b. tempo / grpo_vectorized, G=64  {wide['tempo'] / wide['grpo_vectorized']:6.2f}x   (<= 3x)")
    for threads, times in loaded.items():
        ratio = times["tempo"] / times["grpo_vectorized"]
        print(f"  6. loaded, {threads} thread(s): tempo / grpo_vectorized {ratio:6.2f}x   (quiet figure 1 above)")


if __name__ == "__main__":
    main()
