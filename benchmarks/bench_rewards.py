"""The reward path under verl's load: worst-case latency and throughput of ``compute_score`` with slow inputs mixed in.

    python benchmarks/bench_rewards.py                  # 32 threads, 2000 math calls, 1% slow, the default 10 s bound
    python benchmarks/bench_rewards.py --calls 500      # a quicker look
    python benchmarks/bench_rewards.py --reading        # reading answers only: numeric and choice on hostile texts

verl scores each response in a thread of its reward loop; here ``--threads`` threads share ``--calls``
math calls (``data_source="math"``, so every call goes through math-verify's helper). Fast inputs are
right answers in a different form from the reference, each different (so no cache answers them):
``\\boxed{0.375}`` for ``\\frac{3}{8}``, an expanded polynomial for a factored one, "The final answer
is $n$". A ``--slow-share`` of them is the slow input ``\\boxed{9^{9^{9}}}`` (sympy evaluates the power in
C: minutes, where no signal can stop it), spread evenly. The bound is ``TEMPO_REWARD_MATH_TIMEOUT``
(``--timeout``), helper start-up included (the first calls pay it).

``--reading`` times instead how long numeric and multiple-choice scoring (no helper, no bound but their
own speed) take on hostile 4000-character texts: the same phrase, claim, conclusion or option text
repeated, a long numeral, nested braces. It prints the slowest of three runs for each.

Printed: the bound; the worst-case and median latency of fast and of slow calls; how many fast calls
scored wrong (a fast call answered late would score 0); the throughput (calls per second of wall
time, start-up included); and the share of slow inputs. Runs against any checkout whose
``tempo_verl.recipes.rewards`` has ``compute_score`` (``PYTHONPATH=<checkout>``), e.g. to compare with
an older one.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import os
import random
import statistics
import time

SLOW = r"\boxed{9^{9^{9}}}"
OPTIONS = ["Hypertension", "Type 2 diabetes mellitus", "Asthma", "Gout"]
#: Texts that make an answer reader do the most work per character (each about 4000 characters).
HOSTILE = {
    "phrase repeated": "The answer is " * 290,
    "claim repeated": "Option C is correct " * 200,
    "conclusion cue repeated": "So, " * 1000,
    "negated letters": "the answer is not A; " * 190,
    "MedMCQA phrase repeated": "Ans. is 'c' i.e., " * 220,
    "long numeral": "So the answer is " + "1" * 3980,
    "option text repeated": "Type 2 diabetes " * 250,
    "math-only lines": "1 = 2\n" * 660,
    "nested braces": "So x = " + "{" * 1995 + "}" * 1995,
    "scale words": "1 million " * 400,
}


def reading() -> None:
    """The slowest of three runs of numeric and multiple-choice scoring on each :data:`HOSTILE` text."""
    from tempo_verl.recipes.rewards import compute_score

    for name, text in HOSTILE.items():
        times = []
        for _ in range(3):
            start = time.perf_counter()
            compute_score("gsm_hard", text, "12")
            compute_score("medqa", text, "C", {"options": OPTIONS})
            times.append(time.perf_counter() - start)
        print(f"{name:24s} {len(text):5d} chars: {1000 * max(times):7.1f} ms (numeric + choice)")


def fast_inputs(count: int, seed: int = 0) -> list[tuple[str, str]]:
    """``count`` distinct (response, reference) pairs whose answers are right but written differently."""
    rng = random.Random(seed)
    pairs: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    while len(pairs) < count:
        kind = len(pairs) % 3
        if kind == 0:
            num, den = rng.randint(1, 999), rng.choice([2, 4, 5, 8, 10, 16, 20, 25, 40, 50])
            pair = (rf"So the result is \boxed{{{num / den:g}}}.", rf"\frac{{{num}}}{{{den}}}")
        elif kind == 1:
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            pair = (rf"Expanding, \boxed{{x^2+{a + b}x+{a * b}}}", f"(x+{a})(x+{b})")
        else:
            n = rng.randint(10, 10**6)
            pair = (f"Adding up the cases, the final answer is ${n}$.", f"{n // 2} + {n - n // 2}")
        if pair not in seen:
            seen.add(pair)
            pairs.append(pair)
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=32)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--slow-share", type=float, default=0.01)
    parser.add_argument("--timeout", type=float, default=10.0, help="TEMPO_REWARD_MATH_TIMEOUT (seconds)")
    parser.add_argument("--reading", action="store_true", help="time numeric/choice reading of hostile texts")
    args = parser.parse_args()
    if args.reading:
        reading()
        return
    os.environ["TEMPO_REWARD_MATH_TIMEOUT"] = f"{args.timeout:g}"

    from tempo_verl.recipes.rewards import compute_score

    slow_every = round(1 / args.slow_share) if args.slow_share > 0 else 0
    fast = iter(fast_inputs(args.calls))
    jobs = [
        (SLOW, "3", 0.0, True) if slow_every and i % slow_every == slow_every // 2 else (*next(fast), 1.0, False)
        for i in range(args.calls)
    ]

    def timed(job: tuple[str, str, float, bool]) -> tuple[float, bool, bool]:
        response, reference, expected, slow = job
        start = time.monotonic()
        score = compute_score("math", response, reference)
        elapsed = time.monotonic() - start
        if score != expected and not slow:
            print(f"  fast call scored {score} after {elapsed:.2f} s: {response!r} for {reference!r}")
        return elapsed, slow, score == expected

    start = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(max_workers=args.threads) as executor:
        results = list(executor.map(timed, jobs))
    wall = time.monotonic() - start

    fast_times = sorted(elapsed for elapsed, slow, _ in results if not slow)
    slow_times = sorted(elapsed for elapsed, slow, _ in results if slow)
    wrong_fast = sum(1 for _, slow, right in results if not slow and not right)
    wrong_slow = sum(1 for _, slow, right in results if slow and not right)
    print(f"threads {args.threads}, calls {args.calls}, cpus {os.cpu_count()}")
    print(f"bound (TEMPO_REWARD_MATH_TIMEOUT): {args.timeout:g} s per call, end to end")
    print(f"slow-input share: {len(slow_times) / len(results):.1%} ({len(slow_times)} of {len(results)})")
    print(f"worst-case latency, all calls: {max(elapsed for elapsed, _, _ in results):.2f} s")
    if fast_times:
        print(
            f"fast calls: worst {fast_times[-1]:.2f} s, p99 {fast_times[int(0.99 * (len(fast_times) - 1))]:.3f} s, "
            f"median {statistics.median(fast_times):.3f} s; scored wrong: {wrong_fast} of {len(fast_times)}"
        )
    if slow_times:
        print(
            f"slow calls: worst {slow_times[-1]:.2f} s, median {statistics.median(slow_times):.2f} s; "
            f"scored other than 0: {wrong_slow}"
        )
    print(f"throughput: {len(results) / wall:.1f} calls/s ({wall:.1f} s wall, helper start-up included)")


if __name__ == "__main__":
    main()
