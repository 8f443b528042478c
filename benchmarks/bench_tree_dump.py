"""What the opt-in tree dump adds to a training step, next to the TEMPO estimator's own time.

    python benchmarks/bench_tree_dump.py            # paper scale: 512 prompts x 7 responses x 8192 tokens
    python benchmarks/bench_tree_dump.py --prompts 64 --repeats 3   # a quicker look

Measured (``--threads`` torch threads, the median of ``--repeats`` dumps, each of a different step):
- ``estimator``: one ``tempo_advantage_and_forest`` call (what a step pays for TEMPO anyway);
- ``maybe_dump (caller)``: the time ``TreeDumpWriter.maybe_dump`` blocks the training thread
  (choosing the groups and copying their rows to the host);
- ``background write``: records, JSON and file on the writer's daemon thread (off the critical path);
- ``estimator while writing``: an estimator call made while a write is in flight (the GIL is shared);
- ``group_records (sync)``: everything on one thread, for reference.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from tempo_verl.core.advantage import tempo_advantage_and_forest
from tempo_verl.trees.records import group_records
from tempo_verl.trees.writer import TreeDumpWriter

VOCAB = 151_000


def make_batch(prompts: int, group: int, width: int, prefix_mean: float, seed: int = 0):
    """Synthetic rollouts whose responses copy a geometric-length prefix of their group's base sequence.

    Returns:
        ``(rewards (bs, L), response_mask (bs, L), attention (bs, L), uids (bs,), responses (bs, L))``.
    """
    gen = torch.Generator().manual_seed(seed)
    bs = prompts * group
    base = torch.randint(1, VOCAB, (prompts, width), generator=gen)
    responses = torch.randint(1, VOCAB, (bs, width), generator=gen)
    shared = torch.distributions.Geometric(probs=torch.tensor(1.0 / (prefix_mean + 1.0))).sample((bs,)).long()
    pos = torch.arange(width)
    row_group = torch.arange(bs) // group
    responses = torch.where(pos[None, :] < shared[:, None], base[row_group], responses)
    lengths = torch.randint(width // 4, width + 1, (bs,), generator=gen)
    attention = (pos[None, :] < lengths[:, None]).long()
    responses = responses * attention
    rewards = torch.zeros(bs, width)
    rewards[torch.arange(bs), lengths - 1] = torch.randint(0, 2, (bs,), generator=gen).float()
    uids = np.array([f"uid-{g}" for g in row_group.tolist()], dtype=object)
    return rewards, attention.clone(), attention, uids, responses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=512)
    parser.add_argument("--group", type=int, default=7)
    parser.add_argument("--width", type=int, default=8192)
    parser.add_argument("--groups", type=int, default=8, help="groups dumped per step (dump.groups)")
    parser.add_argument("--prefix-mean", type=float, default=40.0, help="mean shared-prefix length (tokens)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rewards, mask, attention, uids, responses = make_batch(args.prompts, args.group, args.width, args.prefix_mean)

    def estimator():
        return tempo_advantage_and_forest(
            rewards, mask, index=uids, responses=responses, response_attention_mask=attention
        )

    estimator()  # warm-up
    est, caller, write, est_busy, sync = [], [], [], [], []
    out = Path(tempfile.mkdtemp(prefix="tempo-trees-"))
    writer = TreeDumpWriter(out, every=1, groups=args.groups)
    forest = None
    for step in range(1, args.repeats + 1):
        start = time.perf_counter()
        _, _, forest = estimator()
        est.append(time.perf_counter() - start)

        start = time.perf_counter()
        assert writer.maybe_dump(step, forest, responses, mask, uids)
        caller.append(time.perf_counter() - start)
        start = time.perf_counter()
        estimator()  # overlaps the background write
        est_busy.append(time.perf_counter() - start)
        writer.flush()
        write.append(writer.last_write_s)
    writer.close()
    for _ in range(args.repeats):
        start = time.perf_counter()
        group_records(forest, responses, mask, uids, step=0, max_groups=args.groups)
        sync.append(time.perf_counter() - start)

    size = writer.written[-1].stat().st_size
    med = statistics.median
    print(
        f"batch: {args.prompts} prompts x {args.group} responses x {args.width} tokens "
        f"(bs={args.prompts * args.group}), dump.groups={args.groups}, torch threads={args.threads}, "
        f"{os.cpu_count()} CPUs"
    )
    print(f"estimator (tempo_advantage_and_forest): {med(est) * 1e3:9.1f} ms")
    print(
        f"maybe_dump on the caller's thread:      {med(caller) * 1e3:9.2f} ms  "
        f"({100 * med(caller) / med(est):.2f}% of the estimator)"
    )
    print(f"background write (records+JSON+file):   {med(write) * 1e3:9.1f} ms  (off the critical path)")
    print(f"estimator while a write is in flight:   {med(est_busy) * 1e3:9.1f} ms")
    print(f"group_records, synchronous, reference:  {med(sync) * 1e3:9.1f} ms")
    print(f"dump file: {size / 1e6:.2f} MB per step ({out})")


if __name__ == "__main__":
    main()
